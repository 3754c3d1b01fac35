"""Write files so that a crash or a bad input never leaves a half-written output behind.

An `OSError` on the temporary file or folder (disk full, no permission, a folder where the file
should go) becomes a `FerError` that names the output the user asked for, not the hidden
temporary name, so no caller needs a wrapper of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ferkit.errors import FerError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_ours(error: OSError, target: Path) -> bool:
    """Whether the error is about writing `target`: its folder, or a temporary name beside it."""
    if error.filename is None:
        return True
    where = Path(os.fsdecode(error.filename))
    temporary = f".{target.name}."
    return where in (target, target.parent) or any(
        part.name.startswith(temporary) for part in (where, *where.parents))


@contextlib.contextmanager
def _naming_target(target: Path) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        if not _is_ours(error, target):
            raise
        raise FerError(f"{target}: cannot write ({error.strerror or error})") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    `suffix` ends the temporary name, for writers that choose the format by the name's extension."""
    target = Path(path)
    with _naming_target(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            # mkstemp creates 0600 files; outputs should get the usual permissions.
            os.chmod(tmp, 0o666 & ~_current_umask())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it replaces `path` whole only if the block succeeds."""
    target = Path(path)
    with _naming_target(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            yield tmp
            os.chmod(tmp, 0o777 & ~_current_umask())
            # Move the old folder aside first, so there is never a moment with no output at all.
            retired = target.with_name(f".{target.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            if target.exists():
                os.replace(target, retired)
            os.replace(tmp, target)
            shutil.rmtree(retired, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")

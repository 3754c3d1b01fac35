"""Atomic writes: all or nothing, and an OSError becomes one line naming the output, not its temporary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ferkit.atomic import atomic_dir, atomic_path, write_json
from ferkit.errors import FerError


def test_a_failed_block_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"old": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("stop")
    assert target.read_text() == '{\n  "old": 1\n}\n'
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.json"]


def test_an_unwritable_place_names_the_target(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    target = blocker / "out.json"
    with pytest.raises(FerError, match=rf"^{target}: cannot write \(") as raised:
        write_json(target, {})
    assert ".tmp" not in str(raised.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_names_the_target(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(FerError, match=rf"^{folder / 'out'}: cannot write"), atomic_dir(folder / "out"):
            pass
    finally:
        folder.chmod(0o700)


def test_an_error_while_writing_the_temporary_names_the_target(tmp_path: Path) -> None:
    target = tmp_path / "arrays"

    def fail_on(path: Path) -> None:
        raise OSError(28, "No space left on device", str(path))

    no_space = rf"^{target}: cannot write \(No space left on device\)"
    with pytest.raises(FerError, match=no_space), atomic_dir(target) as tmp:
        fail_on(tmp / "train_images.npy")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_other_files_errors_pass_through_unchanged(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "out.txt"):
        (tmp_path / "missing-input.csv").read_text()

"""The package's own code that a module runs: the `fer` modules it imports, directly or through
others, read from the import statements themselves (imports inside functions included).

Training fingerprints exactly these files to decide whether a run may resume, and a test checks
that each DVC stage's code dependencies in `dvc.yaml` are exactly these files for its command.
Package `__init__.py` files hold only a docstring and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "ferkit"
PACKAGE_DIR = Path(__file__).resolve().parent


def module_path(module: str) -> Path | None:
    """The source file of a `fer` module, or None for a package or a name that is not a module."""
    path = PACKAGE_DIR.joinpath(*module.split(".")[1:]).with_suffix(".py")
    return path if module.startswith(f"{PACKAGE}.") and path.is_file() else None


def _imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from ferkit.x import y` names module ferkit.x, or module ferkit.x.y when y is a submodule.
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if module_path(name) is not None}


def code_files(module: str) -> list[Path]:
    """`module`'s file and the files of every `fer` module it reaches through imports, sorted."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen or module_path(name) is None:
            continue
        seen.add(name)
        pending.extend(_imported(module_path(name)))
    return sorted(module_path(name) for name in seen)

"""dvc.lock records the code each stage ran: for every stage in dvc.yaml, each code dependency (a
file or folder under src/) must have in dvc.lock the md5 that DVC computes for it now. Otherwise the
committed metrics came from code that is no longer there, and a change to a stage's code could land
without its rerun. How to refresh the lock: docs/pipeline.md, "Keeping dvc.lock current".

DVC itself does the hashing (`dvc status`), in a scratch copy of the project's pipeline files and
code: quick, the same in a fresh clone (no data/, no DVC cache) as in a working copy full of data,
and never held up by the repository lock of a `dvc repro` running there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO

# How the committed lock and metrics were made: the Makefile's demo target (docs/pipeline.md).
REFRESH = ("rerun them on the committed demo profile with `make demo` (dvc exp run -S ++basic.epochs=8 "
           "-S ++vgg.epochs=3), then commit dvc.lock with metrics/, reports/ and plots/")
# no git; nothing sent or fetched; DVC's state kept inside the scratch folder, not in /var/tmp/dvc
DVC_CONFIG = "[core]\n    no_scm = true\n    analytics = false\n    check_update = false\n    site_cache_dir = {}\n"


def is_code(path: str) -> bool:
    return path.startswith("src/")


def code_deps(project: Path) -> dict[str, list[str]]:
    """Per stage of dvc.yaml, its dependencies under src/."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    return {name: [dep for dep in stage.get("deps", []) if is_code(dep)] for name, stage in stages.items()}


def scratch_project(repo: Path, folder: Path) -> Path:
    """dvc.yaml, dvc.lock, params.yaml (for the ${...} in dvc.yaml), .dvcignore and the code deps, as
    a DVC project of their own without git; the data deps are absent, so `dvc status` skips them."""
    folder.mkdir(parents=True)
    for name in ("dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore"):
        shutil.copy2(repo / name, folder / name)
    (folder / ".dvc").mkdir()
    (folder / ".dvc" / "config").write_text(DVC_CONFIG.format(folder / ".dvc" / "site-cache"))
    for path in sorted({dep for deps in code_deps(repo).values() for dep in deps}):
        source, target = repo / path, folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        elif source.exists():  # a listed file that is gone: `dvc status` calls it deleted
            shutil.copy2(source, target)
    return folder


def stale_code(project: Path) -> dict[str, dict[str, str]]:
    """Per stage, its code deps whose md5 in dvc.lock is not what DVC computes now, and how they
    differ ("modified", "deleted", "not in dvc.lock")."""
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=project, capture_output=True,
                            text=True, timeout=300)
    assert status.returncode == 0, f"dvc status failed: {status.stderr.strip()}"
    stale: dict[str, dict[str, str]] = {}
    for stage, entries in json.loads(status.stdout or "{}").items():
        for entry in entries:
            changed = entry.get("changed deps", {}) if isinstance(entry, dict) else {}
            for path, state in changed.items():
                if is_code(path) and isinstance(state, str):  # params.yaml's entry is a dict of blocks
                    stale.setdefault(stage, {})[path] = state
    locked = yaml.safe_load((project / "dvc.lock").read_text()).get("stages", {})
    for stage, deps in code_deps(project).items():
        recorded = {dep["path"] for dep in locked.get(stage, {}).get("deps", []) if dep.get("md5")}
        for path in deps:
            if path not in recorded:
                stale.setdefault(stage, {})[path] = "not in dvc.lock"
    return stale


def describe(stale: dict[str, dict[str, str]]) -> str:
    lines = [f"  {stage}: " + ", ".join(f"{path} ({state})" for path, state in paths.items())
             for stage, paths in stale.items()]
    return ("dvc.lock does not record the code these stages would run now:\n" + "\n".join(lines)
            + f"\nTo refresh it, {REFRESH} (docs/pipeline.md, 'Keeping dvc.lock current').")


def test_dvc_lock_records_the_code_of_every_stage(tmp_path: Path) -> None:
    stale = stale_code(scratch_project(REPO, tmp_path / "project"))
    assert not stale, describe(stale)


def record_current_code(project: Path) -> None:
    """Write into the project's dvc.lock the md5 DVC computes now for every code dep, as a rerun would."""
    from dvc.repo import Repo

    lock_path = project / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text())
    with Repo(str(project)) as repo:
        for stage in repo.index.stages:
            deps = lock["stages"][stage.name]["deps"]
            for dep in stage.deps:
                if is_code(dep.def_path):
                    entry = next((entry for entry in deps if entry["path"] == dep.def_path), None)
                    if entry is None:  # a dep that dvc.yaml gained after the last run
                        deps.append(entry := {"path": dep.def_path, "hash": "md5"})
                    entry["md5"] = dep.get_hash().value
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))


def test_the_check_names_each_stage_of_a_touched_file(tmp_path: Path) -> None:
    project = scratch_project(REPO, tmp_path / "project")
    record_current_code(project)
    for path in ("src/ferkit/data/synth.py", "src/ferkit/training/loader.py"):  # a file dep, and a file in a folder dep
        with (project / path).open("a") as code:
            code.write("# touched\n")
    stale = stale_code(project)
    assert stale == {"synth": {"src/ferkit/data/synth.py": "modified"},
                     "train_basic": {"src/ferkit/training": "modified"},
                     "train_vgg": {"src/ferkit/training": "modified"}}
    message = describe(stale)
    assert "  synth: src/ferkit/data/synth.py (modified)\n" in message
    assert "  train_basic: src/ferkit/training (modified)\n" in message and "`make demo`" in message

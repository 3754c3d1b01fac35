"""DVC's experiment queue and a DVC remote, on a tiny synthetic profile in a temporary git repo.

Built as tests/test_pipeline.py builds its repo, but smaller still (one epoch, a quarter-width
VGG), since each queued experiment runs training and evaluation again in its own workspace.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
import time
from pathlib import Path

import pytest

from conftest import dvc, git, make_pipeline_repo

pytestmark = pytest.mark.slow

PROFILE = {
    "synth": {"train_per_class": 30, "valid_per_class": 10, "test_per_class": 10},
    "train": {"threads": 1, "device": "cpu", "batch_size": 32, "epochs": 1},
    "vgg": {"width": 0.25},
    "evaluate": {"device": "cpu", "batch_size": 256},
}
GRID = "basic.dropout=0.1,0.2"  # two experiments; each reruns train_basic and evaluate only
QUEUE_TIMEOUT = 900  # seconds


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The pipeline run once and committed, as a user's repository would be."""
    repo = make_pipeline_repo(tmp_path_factory.mktemp("queue"), PROFILE)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny profile")
    return repo


# The outputs DVC keeps in its cache, hence in a remote; metrics, curves and figures travel with git.
CACHED_OUTPUTS = ("data/synthetic/fer2013.csv", "data/processed", "models/basic", "models/vgg")


def cached_files(repo: Path) -> dict[str, str]:
    """sha256 of every file of the cached outputs."""
    files = {}
    for output in CACHED_OUTPUTS:
        path = repo / output
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                files[str(file.relative_to(repo))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return files


def test_remote_push_delete_pull_restores_every_output(repo: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(repo, work, symlinks=True, ignore=shutil.ignore_patterns("tmp"))  # .dvc/tmp: locks
    dvc(work, "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    before = cached_files(work)
    assert "models/vgg/last.pt" in before and "data/processed/train_images.npy" in before
    dvc(work, "push")

    shutil.rmtree(work / ".dvc" / "cache")
    for output in CACHED_OUTPUTS:
        path = work / output
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert "not in cache" in dvc(work, "status")  # the outputs are gone, before the pull

    dvc(work, "pull")
    assert "Data and pipelines are up to date" in dvc(work, "status")
    assert "in sync" in dvc(work, "status", "--cloud")
    assert cached_files(work) == before


def wait_for_queue(repo: Path) -> str:
    """`dvc queue status` once no task is queued or running, or when QUEUE_TIMEOUT has passed."""
    deadline = time.monotonic() + QUEUE_TIMEOUT
    status = dvc(repo, "queue", "status")
    while re.search(r"\b(Queued|Running)\b", status) and time.monotonic() < deadline:
        time.sleep(3)
        status = dvc(repo, "queue", "status")
    return status


def failure_logs(repo: Path, status: str) -> str:
    names = [line.split()[0] for line in status.splitlines() if line.endswith("Failed")]
    return "\n".join(dvc(repo, "queue", "logs", name) for name in names)


def experiments(repo: Path) -> list[dict[str, str]]:
    """`dvc exp show`'s rows for experiments, not for the workspace or the baseline commit."""
    rows = csv.DictReader(io.StringIO(dvc(repo, "exp", "show", "--csv")))
    return [row for row in rows if row["typ"] in ("branch_base", "branch_commit")]


def test_queued_grid_runs_two_at_a_time_and_exp_show_lists_both(repo: Path) -> None:
    output = dvc(repo, "exp", "run", "--queue", "-S", GRID)
    assert output.count("Queued experiment") == 2, output
    try:
        dvc(repo, "queue", "start", "--jobs", "2")
        status = wait_for_queue(repo)
    finally:
        dvc(repo, "queue", "stop", "--kill")  # nothing is left running, whatever happened
    assert status.count("Success") == 2, status + failure_logs(repo, status)

    rows = experiments(repo)
    assert sorted(row["basic.dropout"] for row in rows) == ["0.1", "0.2"], rows
    for row in rows:
        assert row["State"] == "Success"
        assert 0.0 <= float(row["metrics/basic.json:test.accuracy"]) <= 1.0, row
        assert float(row["metrics/basic_train.json:wall_seconds"]) > 0, row

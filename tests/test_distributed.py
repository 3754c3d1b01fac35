"""Data-parallel training: each rank's share of a global batch, and real 2-process gloo runs on CPU.

The 2-process runs use the basic ConvNet with dropout 0: it has no batch-norm, and dropout masks are
drawn per rank (the one randomness that depends on the process count), so every other difference
between 1 and 2 processes is floating-point summation order.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import committed_params_text, write_arrays
from ferkit.errors import FerError
from ferkit.models.checkpoint import load_checkpoint
from ferkit.models.networks import build_model
from ferkit.params import model_params
from ferkit.training import distributed, train
from ferkit.training.distributed import World
from ferkit.training.loader import BatchLoader, augment_batch, share

CPU = torch.device("cpu")
AUGMENT = yaml.safe_load(committed_params_text())["train"]["augment"]
# 1 vs 2 processes, 99 images, two epochs of batches 32, 32, 32, 3 (shares 16+16 and 2+1): measured max
# |difference| 1.0e-5 while training moved the weights by up to 0.092 (2-core Xeon, torch 2.13 CPU).
# The difference is summation order, amplified by training: one step agrees to 3e-8, and a one-image
# batch amplifies it most (1 to 2.6e-3 over 14 steps), so that case is left to the bit-exact resume test.
WEIGHT_TOLERANCE = 1e-3
FER = [sys.executable, "-m", "ferkit", "train", "basic"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "ferkit",
            "train", "basic"]


@pytest.mark.parametrize("count", [1, 2, 7, 32, 33])
@pytest.mark.parametrize("processes", [1, 2, 3])
def test_shares_split_a_batch_like_tensor_split(count: int, processes: int) -> None:
    rows = torch.arange(count)
    shares = [rows[share(count, rank, processes)] for rank in range(processes)]
    expected = torch.tensor_split(rows, processes)
    assert all(torch.equal(a, b) for a, b in zip(shares, expected))
    assert len(shares[0]) >= 1  # rank 0 is never empty


def test_augmentation_of_an_image_does_not_depend_on_its_share() -> None:
    x = torch.rand(33, 1, 48, 48)
    whole = augment_batch(x.clone(), AUGMENT, torch.Generator().manual_seed(5))
    parts = [augment_batch(x[share(33, rank, 2)].clone(), AUGMENT, torch.Generator().manual_seed(5),
                           share(33, rank, 2), 33) for rank in range(2)]
    assert torch.equal(torch.cat(parts), whole)


def test_ranks_together_see_exactly_the_single_process_batches() -> None:
    images = np.random.default_rng(0).integers(0, 256, (70, 48, 48), dtype=np.uint8)
    labels = np.arange(70) % 7

    def loader(rank: int, processes: int) -> BatchLoader:
        return BatchLoader(images, labels, CPU, 32, 0.5, 0.25, augment=AUGMENT, shuffle=True,
                           rank=rank, processes=processes)

    single = list(loader(0, 1).batches(seed=3))
    ranks = [list(loader(rank, 2).batches(seed=3)) for rank in range(2)]
    assert [len(y) for _, y in ranks[1]] == [16, 16, 3]  # batches of 32, 32 and 6
    for step, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([ranks[r][step][0] for r in range(2)]), x)
        assert torch.equal(torch.cat([ranks[r][step][1] for r in range(2)]), y)
        assert loader(0, 2).global_size(step) == len(y)


def test_weighted_shares_average_to_the_global_batch_gradient() -> None:
    """What DDP computes (the mean over ranks of each rank's gradient) equals one process's gradient,
    for unequal shares and for an empty one."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 3)
    x, y = torch.randn(3, 5), torch.tensor([0, 2, 1])
    criterion = torch.nn.CrossEntropyLoss()

    def gradient(rows: slice, total: int, processes: int) -> torch.Tensor:
        layer.zero_grad()
        logits = layer(x[rows])
        train._backward_loss(criterion(logits, y[rows]), logits, len(y[rows]), total, processes).backward()
        return layer.weight.grad.clone()

    whole = gradient(slice(None), 3, 1)
    for processes in (2, 4):  # shares 2+1, and 1+1+1+empty
        shares = [gradient(share(3, rank, processes), 3, processes) for rank in range(processes)]
        torch.testing.assert_close(torch.stack(shares).mean(0), whole)


def test_new_keys_default_when_a_params_file_lacks_them(tmp_path: Path) -> None:
    params = yaml.safe_load(committed_params_text())
    for key in ("processes", "sync_batchnorm"):
        params["train"].pop(key, None)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    merged = model_params("vgg", tmp_path / "params.yaml")
    assert merged["processes"] == 1 and merged["sync_batchnorm"] is False
    params["train"]["processes"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(FerError, match="train.processes must be an integer >= 1"):
        model_params("vgg", tmp_path / "params.yaml")


def test_sync_batchnorm_on_cpu_is_a_clear_error() -> None:
    world = World(rank=0, size=2, local_size=2, launched=True)
    with pytest.raises(FerError, match="sync_batchnorm needs CUDA"):
        distributed.wrap(torch.nn.Linear(2, 2), world, CPU, sync_batchnorm=True)


def test_cpu_threads_are_split_between_the_workers_of_a_machine() -> None:
    cores = len(os.sched_getaffinity(0))
    assert distributed.cpu_threads(0, World()) == 0  # a plain run keeps `threads: 0` (one per core)
    assert distributed.cpu_threads(3, World(size=2, local_size=2, launched=True)) == 3
    assert distributed.cpu_threads(0, World(size=2, local_size=2, launched=True)) == max(1, cores // 2)


# --- real runs -------------------------------------------------------------------------------------

def make_run(folder: Path, train_size: int, epochs: int, **train_overrides) -> Path:
    write_arrays(folder / "data" / "processed", {"train": train_size, "valid": 64})
    params = yaml.safe_load(committed_params_text())
    # fp32: bf16 autocast (what `precision: auto` takes on CPUs with native bf16) rounds far more coarsely.
    params["train"].update({"epochs": epochs, "batch_size": 32, "device": "cpu", "precision": "fp32", "threads": 1,
                            **train_overrides})
    params["basic"]["dropout"] = 0.0
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder


def weights(folder: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    return torch.load(folder / "models/basic" / name, weights_only=True)["state_dict"]


def curves(folder: Path) -> list[dict[str, str]]:
    with (folder / "plots/basic/train_curves.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def quiet_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_two_processes_train_the_same_weights_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun with 2 gloo processes vs one plain process, same global batch and seed: weights agree
    within WEIGHT_TOLERANCE, itself far below how far training moved them."""
    one = make_run(tmp_path / "one", 99, 2)
    two = make_run(tmp_path / "two", 99, 2)
    monkeypatch.chdir(one)
    train.run("basic")
    ran = subprocess.run(TORCHRUN, cwd=two, env=quiet_env(), capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-3000:]
    summary = (two / "models/basic/train_summary.json").read_text()
    assert '"processes": 2' in summary

    torch.manual_seed(0)
    initial = build_model("basic", 7).state_dict()
    a, b = weights(one), weights(two)
    difference = max((a[k] - b[k]).abs().max().item() for k in a)
    moved = max((a[k] - initial[k]).abs().max().item() for k in a)
    print(f"max |w1 - w2| = {difference:.3g}; training moved weights by up to {moved:.3g}")
    assert difference <= WEIGHT_TOLERANCE < moved / 20
    assert [row["epoch"] for row in curves(two)] == ["1", "2"]


@pytest.mark.slow
def test_killed_two_process_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """`train.processes: 2` launches itself; SIGKILL its whole process group mid-run (as a scheduler or
    Ctrl-C does), start it again, and compare with an uninterrupted 2-process run, bit for bit. The last
    batch holds one image, so rank 1's share of it is empty."""
    clean = make_run(tmp_path / "clean", 385, 5, processes=2)
    killed = make_run(tmp_path / "killed", 385, 5, processes=2)
    subprocess.run(FER, cwd=clean, env=quiet_env(), check=True, capture_output=True)

    process = subprocess.Popen(FER, cwd=killed, env=quiet_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    last = killed / "models/basic/last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    epochs_done = load_checkpoint(last)["epoch"]
    assert epochs_done < 5, "the run finished before it could be killed; make the data larger"
    resumed = subprocess.run(FER, cwd=killed, env=quiet_env(), check=True, capture_output=True, text=True)
    assert f"resuming after epoch {epochs_done}" in resumed.stdout + resumed.stderr

    assert curves(killed) == curves(clean)
    for name in ("last.pt", "best.pt"):
        a, b = weights(clean, name), weights(killed, name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_failing_worker_is_one_clear_error(tmp_path: Path) -> None:
    folder = make_run(tmp_path, 64, 1, processes=2)
    for path in (folder / "data/processed").glob("valid_*"):
        path.unlink()
    ran = subprocess.run(FER, cwd=folder, env=quiet_env(), capture_output=True, text=True)
    assert ran.returncode == 2
    assert "valid_images.npy: missing; run `fer preprocess`" in ran.stderr  # the worker's own error
    assert re.search(r"fer: error: training in 2 processes failed: rank [01] exited with 1", ran.stderr)

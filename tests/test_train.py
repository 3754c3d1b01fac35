"""Training stage: parameter checks, determinism, kill-and-resume, checkpoints and outputs."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import committed_params_text, write_arrays
from ferkit.cli import main
from ferkit.errors import FerError
from ferkit.models.checkpoint import load_checkpoint
from ferkit.training import train

REPO = Path(__file__).resolve().parents[1]
TIMING_COLUMNS = ("seconds",)




def write_params(path: Path, **train_overrides) -> Path:
    params = yaml.safe_load(committed_params_text())
    params["train"].update({"epochs": 3, "batch_size": 32, "device": "cpu", "threads": 1, **train_overrides})
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_arrays(tmp_path / "data" / "processed", {"train": 192, "valid": 64})
    write_params(tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def read_curves(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(handle)]


def state_dicts_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_outputs_and_curve_columns(workdir: Path) -> None:
    metrics = train.run("basic")
    with (workdir / "plots/basic/train_curves.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[1]["lr"]) == pytest.approx(float(rows[0]["lr"]) * 0.98)
    best_row = max(rows, key=lambda r: float(r["val_acc"]))
    assert metrics["best_epoch"] == int(best_row["epoch"])
    best = torch.load(workdir / "models/basic/best.pt", weights_only=True)
    assert best["epoch"] == metrics["best_epoch"] and best["val_acc"] == pytest.approx(float(best_row["val_acc"]))
    assert (workdir / "metrics/basic_train.json").exists()
    assert metrics["train_images_per_second"] > 0


def test_test_split_is_never_needed(workdir: Path) -> None:
    assert not list((workdir / "data/processed").glob("test_*"))
    train.run("basic")  # would raise if it tried to load test arrays


def test_same_seed_gives_bit_identical_results(workdir: Path) -> None:
    train.run("basic")
    first_curves = read_curves(workdir / "plots/basic/train_curves.csv")
    first_weights = torch.load(workdir / "models/basic/last.pt", weights_only=True)["state_dict"]
    for path in (workdir / "models").rglob("*.pt"):
        path.unlink()
    train.run("basic")
    assert read_curves(workdir / "plots/basic/train_curves.csv") == first_curves
    second_weights = torch.load(workdir / "models/basic/last.pt", weights_only=True)["state_dict"]
    assert state_dicts_equal(first_weights, second_weights)


def test_changed_parameters_restart_instead_of_resuming(workdir: Path, capsys) -> None:
    train.run("basic")
    write_params(workdir / "params.yaml", lr=0.02)
    train.run("basic")
    captured = capsys.readouterr()
    assert "starting afresh" in captured.out + captured.err
    rows = read_curves(workdir / "plots/basic/train_curves.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and float(rows[0]["lr"]) == 0.02


def test_more_epochs_continue_from_last(workdir: Path) -> None:
    train.run("basic")
    three = read_curves(workdir / "plots/basic/train_curves.csv")
    write_params(workdir / "params.yaml", epochs=4)
    train.run("basic")
    four = read_curves(workdir / "plots/basic/train_curves.csv")
    assert four[:3] == three and len(four) == 4


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """SIGKILL a real `fer train` process mid-run, start it again, compare with a clean run."""
    runs = {}
    for name in ("clean", "killed"):
        folder = tmp_path / name
        write_arrays(folder / "data" / "processed", {"train": 384, "valid": 64})
        write_params(folder / "params.yaml", epochs=5)
        runs[name] = folder
    command = [sys.executable, "-m", "ferkit", "train", "basic"]
    subprocess.run(command, cwd=runs["clean"], check=True, capture_output=True)

    process = subprocess.Popen(command, cwd=runs["killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = runs["killed"] / "models/basic/last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    epochs_done = load_checkpoint(last)["epoch"]
    assert epochs_done < 5, "the run finished before it could be killed; make the data larger"
    resumed = subprocess.run(command, cwd=runs["killed"], check=True, capture_output=True, text=True)
    assert f"resuming after epoch {epochs_done}" in resumed.stdout + resumed.stderr

    assert read_curves(runs["killed"] / "plots/basic/train_curves.csv") == \
        read_curves(runs["clean"] / "plots/basic/train_curves.csv")
    for checkpoint in ("last.pt", "best.pt"):
        clean = torch.load(runs["clean"] / "models/basic" / checkpoint, weights_only=True)["state_dict"]
        killed = torch.load(runs["killed"] / "models/basic" / checkpoint, weights_only=True)["state_dict"]
        assert state_dicts_equal(clean, killed)


@pytest.mark.parametrize("override, message", [
    ({"lr": -0.1}, "train.lr must be a number > 0.0, got -0.1"),
    ({"epochs": "ten"}, "train.epochs must be an integer, got 'ten'"),
    ({"nesterov": "yes"}, "train.nesterov must be true or false"),
    ({"device": "tpu"}, "train.device must be one of auto, cpu, cuda"),
    ({"optimiser": "adam"}, "train.optimiser is not a known parameter"),
])
def test_bad_parameters_are_named_in_one_line(workdir: Path, capsys, override, message) -> None:
    write_params(workdir / "params.yaml", **override)
    assert main(["train", "basic"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error
    assert not (workdir / "models").exists()


def test_bad_model_block_value_is_named(workdir: Path, capsys) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["vgg"]["dropout"] = 2
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["train", "vgg"]) == 2
    assert "vgg.dropout must be a number" in capsys.readouterr().err


def test_unknown_model_is_rejected(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "resnet"])
    assert "invalid choice: 'resnet'" in capsys.readouterr().err
    with pytest.raises(FerError, match="unknown model 'resnet'"):
        train.run("resnet")


def test_missing_arrays_are_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    write_params(tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "basic"]) == 2
    assert "data/processed/classes.json: missing; run `fer preprocess`" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"not a checkpoint at all", None])
def test_bad_or_foreign_checkpoint_is_a_clear_error(tmp_path: Path, content) -> None:
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)  # a valid torch file, but not ours
    else:
        path.write_bytes(content)
    with pytest.raises(FerError, match=r"bad\.pt: not a (readable )?fer checkpoint"):
        load_checkpoint(path)


def test_checkpoints_load_with_weights_only(workdir: Path) -> None:
    train.run("basic")
    for name in ("best.pt", "last.pt"):
        checkpoint = torch.load(workdir / "models/basic" / name, weights_only=True)
        assert checkpoint["format"] == "fer-checkpoint/1" and checkpoint["model"] == "basic"
    assert not [p for p in (workdir / "models/basic").iterdir() if p.name.endswith(".tmp")]


def test_cuda_request_without_gpu_is_a_clear_error(workdir: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    write_params(workdir / "params.yaml", device="cuda")
    assert main(["train", "basic"]) == 2
    assert "device 'cuda' was asked for" in capsys.readouterr().err


def test_learns_the_toy_task(workdir: Path) -> None:
    write_params(workdir / "params.yaml", epochs=6)
    metrics = train.run("basic")
    assert metrics["best_val_acc"] > 0.5  # chance is 1/7



def test_init_takes_a_shipped_ensemble_member_and_refuses_what_does_not_fit(tmp_path: Path) -> None:
    """train.init: a shipped model by name (one member of an ensemble), checked against the network
    trained here; a missing file or another shape is one line naming train.init."""
    from ferkit.emotions import FER2013_CLASSES
    from ferkit.models.checkpoint import member_of
    from ferkit.pretrained import model_file

    params = {"init": "fer2013", "init_member": 1, "width": 0.5}
    start = train._initial_weights(params, "vgg", list(FER2013_CLASSES))
    shipped = load_checkpoint(model_file("fer2013"))
    expected = member_of(shipped, 1, "fer2013")
    assert start is not None and start.header.members == 1 and start.header.mean == shipped.header.mean
    assert all(torch.equal(start.state_dict[key], expected.state_dict[key]) for key in expected.state_dict)
    assert train._initial_weights({**params, "init": "none"}, "vgg", list(FER2013_CLASSES)) is None
    for changed, message in (({"init": str(tmp_path / "no.pt")}, r"^train\.init: .*no\.pt: no such model file"),
                             ({"width": 1.0}, r"^train\.init: .*fer2013\.pt: its width is 0\.5; .* has 1\.0$"),
                             ({"init_member": 2}, r"fer2013\.pt: has 2 member\(s\); there is no member 2$")):
        with pytest.raises(FerError, match=message):
            train._initial_weights({**params, **changed}, "vgg", list(FER2013_CLASSES))

"""The short-budget recipe parameters: width multiplier, warm-up + cosine schedule, EMA of the
weights; each does what params.yaml says, and a run that uses them still resumes exactly."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml

from conftest import committed_params_text, write_arrays
from ferkit.models.checkpoint import load_checkpoint, model_from_checkpoint
from ferkit.models.networks import build_model
from ferkit.training import train

RECIPE = {"epochs": 4, "batch_size": 32, "device": "cpu", "threads": 1, "precision": "fp32",
          "schedule": "cosine", "warmup_epochs": 1, "ema_decay": 0.9, "label_smoothing": 0.1}
STEPS_PER_EPOCH = 6  # 192 training images in batches of 32


def setup(folder: Path, width: float = 0.5) -> Path:
    write_arrays(folder / "data" / "processed", {"train": 192, "valid": 64})
    params = yaml.safe_load(committed_params_text())
    params["train"].update(RECIPE)
    params["basic"]["width"] = width
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder


def lrs(folder: Path) -> list[float]:
    with (folder / "plots/basic/train_curves.csv").open() as handle:
        return [float(row["lr"]) for row in csv.DictReader(handle)]


@pytest.mark.parametrize(("model", "full", "half"), [("basic", (32, 64, 128), (16, 32, 64)),
                                                     ("vgg", (64, 128, 256, 512), (32, 64, 128, 256))])
def test_width_scales_every_conv_layer(model: str, full: tuple, half: tuple) -> None:
    def conv_widths(width: float) -> tuple:
        layers = build_model(model, 7, width=width).modules()
        return tuple(dict.fromkeys(m.out_channels for m in layers if isinstance(m, torch.nn.Conv2d)))

    assert conv_widths(1.0) == full and conv_widths(0.5) == half


def test_cosine_schedule_warms_up_then_decays_to_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(setup(tmp_path))
    train.run("basic")
    peak, total = 0.01, RECIPE["epochs"] * STEPS_PER_EPOCH
    expected_at = [min((step + 1) / STEPS_PER_EPOCH, 1.0) if step < STEPS_PER_EPOCH else
                   0.5 * (1 + math.cos(math.pi * (step - STEPS_PER_EPOCH) / (total - STEPS_PER_EPOCH)))
                   for step in range(0, total, STEPS_PER_EPOCH)]  # the lr at each epoch's first batch
    assert lrs(tmp_path) == pytest.approx([peak * factor for factor in expected_at])
    final_lr = load_checkpoint("models/basic/last.pt")["optimizer"]["param_groups"][0]["lr"]
    assert final_lr == pytest.approx(0.0, abs=1e-12)


def test_ema_weights_are_the_ones_validated_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(setup(tmp_path))
    train.run("basic")
    last, best = load_checkpoint("models/basic/last.pt"), load_checkpoint("models/basic/best.pt")
    averaged = {key.removeprefix("module."): value for key, value in last["ema"].items() if key.startswith("module.")}
    raw = last["state_dict"]
    assert any(not torch.equal(raw[key], averaged[key]) for key in raw)  # the average is not the raw model
    if best["epoch"] == last["epoch"]:
        assert all(torch.equal(best["state_dict"][key], averaged[key]) for key in averaged)
    model = model_from_checkpoint(best)  # best.pt rebuilds at its recorded width
    assert best["width"] == 0.5 and model.features[0].out_channels == 16


def test_a_run_with_the_recipe_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole, stopped = setup(tmp_path / "whole"), setup(tmp_path / "stopped")
    monkeypatch.chdir(whole)
    train.run("basic")
    monkeypatch.chdir(stopped)
    real_write = train._write_curves

    def stop_after_two_epochs(path: Path, history: list) -> None:
        real_write(path, history)
        if len(history) == 2:
            raise KeyboardInterrupt  # as if killed right after epoch 2 was saved

    monkeypatch.setattr(train, "_write_curves", stop_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        train.run("basic")
    monkeypatch.setattr(train, "_write_curves", real_write)
    train.run("basic")  # resumes after epoch 2
    assert lrs(stopped) == lrs(whole)
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(whole / "models/basic" / name), load_checkpoint(stopped / "models/basic" / name)
        assert all(torch.equal(a["state_dict"][key], b["state_dict"][key]) for key in a["state_dict"])
    ema_a, ema_b = (load_checkpoint(folder / "models/basic/last.pt")["ema"] for folder in (whole, stopped))
    assert all(torch.equal(ema_a[key], ema_b[key]) for key in ema_a)

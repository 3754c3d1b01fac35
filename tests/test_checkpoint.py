"""The checkpoint header: the shipped files and old-style checkpoints load, defaults fill what older
files lack, the stored form round-trips, and a bad header value is a one-line error."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ferkit.choices import SHIPPED_MODELS
from ferkit.emotions import FER2013_CLASSES, LABEL_SETS
from ferkit.errors import FerError
from ferkit.inference.models import PRETRAINED_DIR, load_classifier
from ferkit.models.checkpoint import (
    FORMAT,
    Checkpoint,
    CheckpointHeader,
    check_classes,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from ferkit.models.networks import build_model


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_the_shipped_files_load_with_their_stored_values(name: str) -> None:
    path = PRETRAINED_DIR / f"{name}.pt"
    stored = torch.load(path, weights_only=True)
    header = load_checkpoint(path).header
    assert (header.model, header.mean, header.std, header.dropout, header.width, header.temperature) == (
        stored["model"], stored["mean"], stored["std"], stored["dropout"], stored["width"], stored["temperature"])
    assert header.classes == tuple(stored.get("classes", FER2013_CLASSES))
    assert header.classes == LABEL_SETS[header.labels]
    model_from_checkpoint(load_checkpoint(path), str(path))  # the weights fit the recorded width


def test_an_old_style_dict_without_classes_width_or_temperature_loads(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    weights = build_model("basic", len(FER2013_CLASSES)).state_dict()
    torch.save({"format": FORMAT, "model": "basic", "dropout": 0.25, "state_dict": weights, "mean": 0.5,
                "std": 0.25, "epoch": 7}, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.header == CheckpointHeader(model="basic", mean=0.5, std=0.25, dropout=0.25, width=1.0,
                                                 classes=FER2013_CLASSES, labels="fer2013", temperature=1.0, epoch=7)
    assert checkpoint["classes"] == list(FER2013_CLASSES)  # the stored form, as older code read it
    classifier = load_classifier(path)
    assert classifier.classes == FER2013_CLASSES and classifier.temperature == 1.0 and classifier.name == "basic"


def test_the_stored_form_round_trips_with_training_extras(tmp_path: Path) -> None:
    header = CheckpointHeader(model="vgg", mean=0.5, std=0.2, dropout=0.5, width=0.25, classes=LABEL_SETS["ferplus"],
                              labels="ferplus", epoch=3, val_acc=0.5)
    weights = build_model("vgg", 8, width=0.25).state_dict()
    save_checkpoint(tmp_path / "c.pt", Checkpoint(header, weights, {"fingerprint": "abc", "history": [1, 2]}))
    stored = torch.load(tmp_path / "c.pt", weights_only=True)
    assert stored["classes"] == list(LABEL_SETS["ferplus"]) and "calibrated_on" not in stored
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.header == header and loaded.extra == {"fingerprint": "abc", "history": [1, 2]}
    assert loaded["fingerprint"] == "abc" and loaded["epoch"] == 3
    assert CheckpointHeader.from_metadata(header.to_metadata(), "m.onnx") == replace(
        header, dropout=0.0, width=1.0, labels=None, epoch=None, val_acc=None)  # ONNX keeps what running needs


@pytest.mark.parametrize(("change", "message"), [
    ({"model": "resnet"}, "checkpoint is for unknown model 'resnet'"),
    ({"classes": "Angry"}, "checkpoint's 'classes' is not a list of class names"),
    ({"width": "wide"}, "checkpoint's 'width' is not a number"),
    ({"mean": None}, "checkpoint's 'mean' is not a number"),
])
def test_a_bad_header_value_is_one_line(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "bad.pt"
    torch.save({"format": FORMAT, "model": "basic", "dropout": 0.0, "state_dict": {}, "mean": 0.5, "std": 0.25,
                **change}, path)
    with pytest.raises(FerError, match=rf"bad\.pt: {message}"):
        load_checkpoint(path)


def test_a_checkpoint_lacking_a_required_key_is_refused(tmp_path: Path) -> None:
    torch.save({"format": FORMAT, "model": "basic", "state_dict": {}, "mean": 0.5, "std": 0.25}, tmp_path / "c.pt")
    with pytest.raises(FerError, match="c.pt: checkpoint lacks 'dropout'"):
        load_checkpoint(tmp_path / "c.pt")


def test_the_class_check_names_both_class_lists() -> None:
    header = CheckpointHeader(model="basic", mean=0.5, std=0.25, classes=LABEL_SETS["ferplus"])
    check_classes(header, LABEL_SETS["ferplus"], "m.pt", "advice")
    with pytest.raises(FerError, match="m.pt: trained on classes Angry, .*, Contempt, but the data's are Angry, "
                                       ".*, Neutral: advice$"):
        check_classes(header, FER2013_CLASSES, "m.pt", "advice")

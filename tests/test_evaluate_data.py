"""`fer evaluate --data` (any model on any labelled data, read as `fer preprocess` reads it) and
`fer calibrate` (temperature scaling)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from conftest import (
    LABELS,
    USAGES,
    good_csv,
    gray_image,
    make_folder,
    prefixed_folder,
    sample_images,
    write_classes,
    write_csv,
    write_untrained_checkpoint,
)
from ferkit.cli import main
from ferkit.data.arrays import load_split
from ferkit.emotions import FER2013_CLASSES, SPLITS, USAGE_TO_SPLIT
from ferkit.evaluation.calibration import expected_calibration_error, fit_temperature, log_probabilities
from ferkit.evaluation.evaluate import per_class_report
from ferkit.inference.models import load_classifier
from ferkit.models.checkpoint import load_checkpoint, save_checkpoint
from ferkit.models.networks import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("model") / "basic.pt")


def evaluate(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "result.json"
    assert main(["evaluate", *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_csv_all_rows_and_one_split(tmp_path: Path, checkpoint: Path) -> None:
    csv = good_csv(tmp_path, "fer2013.csv.gz")
    everything = evaluate(tmp_path, "--data", str(csv), "--model", str(checkpoint))
    assert everything["images"] == len(USAGES)
    private = evaluate(tmp_path, "--data", str(csv), "--model", str(checkpoint), "--split", "PrivateTest")
    rows = [row for row, usage in enumerate(USAGES) if usage == "PrivateTest"]
    predicted = load_classifier(checkpoint).predict_proba(sample_images()[rows]).argmax(axis=1)
    labels = np.array(LABELS)[rows]
    assert private["images"] == len(rows)
    assert private["accuracy"] == round(float((predicted == labels).mean()), 6)
    assert sum(scores["support"] for scores in private["per_class"].values()) == len(rows)


def test_class_folders_in_any_spelling_and_unknown_ones_left_out(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    faces = make_folder(tmp_path / "faces", {
        "Anger/a.png": gray_image(10), "happiness/b.jpg": gray_image(200, size=96), "sad/c.png": gray_image(90),
        "sad/nested/d.png": gray_image(95), "contempt/e.png": gray_image(50), "contempt/f.png": gray_image(60),
        "notes/readme.txt": b"not counted"})
    result = evaluate(tmp_path, "--data", str(faces), "--model", str(checkpoint))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "contempt (2 images)" in err and "notes (0 images)" in err
    assert result["images"] == 4
    support = {emotion: scores["support"] for emotion, scores in result["per_class"].items()}
    assert support == {"Angry": 1, "Happy": 1, "Sad": 2}  # only the classes present
    assert result["classes_absent"] == ["Disgust", "Fear", "Surprise", "Neutral"]


@pytest.mark.parametrize(("make", "args", "message"), [
    (lambda root: good_csv(root), ["--split", "Validation"],
     "fer2013.csv: unknown --split 'Validation': its Usage values are Training, PublicTest, PrivateTest "
     "(or train, valid, test)"),
    (lambda root: prefixed_folder(root / "f"), ["--split", "Validation"], "unknown --split 'Validation'"),
    (lambda root: layout_csv(root / "other.csv"), ["--split", "test"],
     "other.csv: unknown --split 'test': its Usage values are Test"),
    (lambda root: write_csv(root / "empty.csv", ["emotion,pixels,Usage"]), [], "empty.csv: no rows after the header"),
    (lambda root: make_folder(root / "f", {"contempt/a.png": gray_image(1)}), [], "no class folders"),
    (lambda root: make_folder(root / "f", {"fear/a.png": b"not an image"}), [], "a.png: not an image"),
    (lambda root: root / "missing.csv", [], "missing.csv: no such file or folder"),
])
def test_bad_data_is_one_line(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str],
                              make, args: list[str], message: str) -> None:
    data = make(tmp_path)
    assert main(["evaluate", "--data", str(data), "--model", str(checkpoint), *args]) == 2
    error = capsys.readouterr().err.splitlines()[-1]  # after the warning about the contempt folder, if any
    assert error.startswith("fer: error: ") and message in error


# --- a CSV in FER-2013's layout with other Usage values, and data that lacks some classes ---------

def layout_csv(path: Path, usages: tuple[str, ...] = ("Test",) * len(USAGES), labels: tuple[int, ...] = LABELS,
             images: np.ndarray | None = None) -> Path:
    """A CSV in FER-2013's layout with the given Usage value and label per row."""
    images = sample_images(len(usages)) if images is None else images
    rows = [f"{label},{' '.join(map(str, image.ravel()))},{usage}"
            for image, label, usage in zip(images, labels, usages)]
    return write_csv(path, ["emotion,pixels,Usage", *rows])


def test_other_usage_values_are_scored_whole_or_by_value(tmp_path: Path, checkpoint: Path) -> None:
    usages = ("Test", "Validation", "Test", "Test", "Validation", "Test", "Test")
    csv = layout_csv(tmp_path / "other.csv.gz", usages)
    predicted = load_classifier(checkpoint).predict_proba(sample_images()).argmax(axis=1)
    whole = evaluate(tmp_path, "--data", str(csv), "--model", str(checkpoint))
    assert whole["images"] == len(usages)
    assert whole["accuracy"] == round(float((predicted == np.array(LABELS)).mean()), 6)
    rows = [row for row, usage in enumerate(usages) if usage == "Test"]
    test = evaluate(tmp_path, "--data", str(csv), "--model", str(checkpoint), "--split", "Test")
    assert test["images"] == len(rows) and test["split"] == "Test"
    assert test["accuracy"] == round(float((predicted[rows] == np.array(LABELS)[rows]).mean()), 6)


def test_only_training_rows_are_scored_whole_and_by_either_name(tmp_path: Path, checkpoint: Path) -> None:
    csv = layout_csv(tmp_path / "train_only.csv", ("Training",) * len(USAGES))
    for split in ([], ["--split", "Training"], ["--split", "train"]):
        assert evaluate(tmp_path, "--data", str(csv), "--model", str(checkpoint), *split)["images"] == len(USAGES)


def test_fer2013_split_names_still_select_their_rows(tmp_path: Path, checkpoint: Path) -> None:
    csv = good_csv(tmp_path)
    for usage, split in USAGE_TO_SPLIT.items():
        rows = sum(value == usage for value in USAGES)
        assert evaluate(tmp_path, "--data", str(csv), "--model", str(checkpoint), "--split", usage)["images"] == rows
        assert evaluate(tmp_path, "--data", str(csv), "--model", str(checkpoint), "--split", split)["images"] == rows


def test_macro_f1_covers_the_classes_present_and_names_the_absent_one(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    neutral = FER2013_CLASSES.index("Neutral")
    labels = tuple(row % neutral for row in range(30))  # six classes, no Neutral
    images = sample_images(len(labels), seed=3)
    csv = layout_csv(tmp_path / "no_neutral.csv", ("Test",) * len(labels), labels, images)
    out = tmp_path / "result.json"
    assert main(["evaluate", "--data", str(csv), "--model", str(checkpoint), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    predicted = load_classifier(checkpoint).predict_proba(images).argmax(axis=1)
    present = sorted(set(labels))
    assert result["macro_f1"] == round(f1_score(labels, predicted, labels=present, average="macro"), 6)
    assert list(result["per_class"]) == [FER2013_CLASSES[label] for label in present]
    assert result["classes_absent"] == ["Neutral"]
    assert result["predicted_as_absent"] == {"Neutral": int((predicted == neutral).sum())}
    report = capsys.readouterr().out
    assert "macro-F1 over the 6 classes present; absent from the labels: Neutral" in report
    assert "\nNeutral " not in report  # no table row for it


def test_with_every_class_present_the_report_is_scikit_learns_over_all_classes() -> None:
    labels = np.arange(70) % 7
    predicted = np.random.default_rng(0).integers(0, 7, 70)
    report = per_class_report(labels, predicted, FER2013_CLASSES)
    assert "classes_absent" not in report and list(report["per_class"]) == list(FER2013_CLASSES)
    assert report["macro_f1"] == round(f1_score(labels, predicted, labels=range(7), average="macro"), 6)


def test_fit_temperature_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 7)) * 3
    true_probabilities = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(7, p=row) for row in true_probabilities])
    overconfident = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    temperature = fit_temperature(log_probabilities(overconfident), labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    calibrated = np.exp(logits / temperature) / np.exp(logits / temperature).sum(axis=1, keepdims=True)
    assert expected_calibration_error(calibrated, labels) < expected_calibration_error(overconfident, labels) / 3


def valid_split(data: Path, seed: int) -> np.ndarray:
    """A `fer preprocess`-style folder holding only a valid split of 64 random faces; returns them."""
    write_classes(data)
    images = np.random.default_rng(seed).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    np.save(data / "valid_images.npy", images)
    np.save(data / "valid_labels.npy", np.arange(64, dtype=np.int64) % 7)
    return images


def test_calibrate_stores_the_temperature_and_keeps_every_prediction(tmp_path: Path, checkpoint: Path) -> None:
    data = tmp_path / "data"
    images = valid_split(data, seed=1)
    out = tmp_path / "calibrated.pt"
    assert main(["calibrate", str(checkpoint), "--out", str(out), "--data", str(data), "--half"]) == 0
    stored = load_checkpoint(out)
    assert stored["temperature"] > 0 and stored["state_dict"]["features.0.weight"].dtype == torch.float16
    before, after = load_classifier(checkpoint), load_classifier(out)
    assert after.temperature == stored["temperature"]
    assert np.array_equal(before.predict_proba(images).argmax(axis=1), after.predict_proba(images).argmax(axis=1))


def test_an_ensemble_averages_the_models_probabilities(tmp_path: Path, checkpoint: Path) -> None:
    other = write_untrained_checkpoint(tmp_path / "other.pt", seed=1)
    csv = good_csv(tmp_path)
    both = evaluate(tmp_path, "--data", str(csv), "--model", str(checkpoint), str(other))
    averaged = (load_classifier(checkpoint).predict_proba(sample_images())
                + load_classifier(other).predict_proba(sample_images())) / 2
    assert both["model"] == f"{checkpoint} + {other}"
    assert both["accuracy"] == round(float((averaged.argmax(axis=1) == np.array(LABELS)).mean()), 6)


def test_calibrating_several_checkpoints_ships_their_ensemble_in_one_file(tmp_path: Path, checkpoint: Path) -> None:
    data = tmp_path / "data"
    images = valid_split(data, seed=2)
    other = write_untrained_checkpoint(tmp_path / "other.pt", seed=1)
    out = tmp_path / "ensemble.pt"
    assert main(["calibrate", str(checkpoint), str(other), "--out", str(out), "--data", str(data)]) == 0
    ensemble = load_classifier(out)
    assert load_checkpoint(out).header.members == 2 and ensemble.temperature != 1.0
    uncalibrated = replace(ensemble, temperature=1.0)
    members = [load_classifier(checkpoint), load_classifier(other)]
    for tta in ("none", "flip"):
        averaged = np.mean([member.predict_proba(images, tta=tta) for member in members], axis=0)
        assert np.abs(uncalibrated.predict_proba(images, tta=tta) - averaged).max() < 1e-5


@pytest.mark.parametrize(("model", "width", "message"), [
    ("vgg", 1.0, "its model (vgg) is not"), ("basic", 0.5, "its width (0.5) is not")])
def test_an_ensemble_of_different_shapes_is_refused_in_one_line(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str], model: str, width: float,
        message: str) -> None:
    other = tmp_path / "other.pt"
    save_checkpoint(other, {"model": model, "dropout": 0.0, "mean": 0.5, "std": 0.25, "width": width,
                            "state_dict": build_model(model, 7, width=width).state_dict()})
    out = tmp_path / "ensemble.pt"
    assert main(["calibrate", str(checkpoint), str(other), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{other}: {message} {checkpoint}'s" in error and not out.exists()


def spelled_folder(root: Path) -> Path:
    """The Kaggle image-folder layout, with happy/ and angry/ spelled happiness/ and Anger/."""
    root = prefixed_folder(root)
    for part in ("train", "test"):
        (root / part / "happy").rename(root / part / "happiness")
        (root / part / "angry").rename(root / part / "Anger")
    return root


def test_preprocess_and_evaluate_accept_the_same_folder_spellings(tmp_path: Path, checkpoint: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    faces = spelled_folder(tmp_path / "faces")
    monkeypatch.chdir(tmp_path)  # outside a project folder, too
    assert main(["preprocess", "--source", str(faces), "--out", "arrays"]) == 0
    happy, angry = FER2013_CLASSES.index("Happy"), FER2013_CLASSES.index("Angry")
    for split in SPLITS:
        labels = load_split(tmp_path / "arrays", split)[1]
        assert (labels == happy).sum() == (2 if split == "train" else 1) and (labels == angry).sum() >= 1

    everything = evaluate(tmp_path, "--data", str(faces), "--model", str(checkpoint))
    assert everything["images"] == 4 * len(FER2013_CLASSES)
    assert everything["per_class"]["Happy"]["support"] == everything["per_class"]["Angry"]["support"] == 4
    private = evaluate(tmp_path, "--data", str(faces), "--model", str(checkpoint), "--split", "PrivateTest")
    arrays = load_split(tmp_path / "arrays", "test")
    predicted = load_classifier(checkpoint).predict_proba(arrays[0]).argmax(axis=1)
    assert private["images"] == len(arrays[1])  # the same rows preprocess puts in test
    assert private["accuracy"] == round(float((predicted == arrays[1]).mean()), 6)
    # one part of it is a folder of class folders
    assert evaluate(tmp_path, "--data", str(faces / "test"), "--model", str(checkpoint))["images"] == 14


@pytest.mark.parametrize(("args", "message"), [
    (["--split", "test"], "--split applies to a CSV or an image folder with train/ and test/"),
    (["--ferplus-votes", "votes.csv"], "--ferplus-votes applies to a CSV; a folder's labels are its folder names"),
])
def test_options_that_a_folder_of_class_folders_cannot_use(tmp_path: Path, checkpoint: Path, capsys,
                                                           args: list[str], message: str) -> None:
    faces = make_folder(tmp_path / "faces", {"happiness/a.png": gray_image(10)})
    assert main(["evaluate", "--data", str(faces), "--model", str(checkpoint), *args]) == 2
    assert message in capsys.readouterr().err


def test_votes_for_a_fer2013_model_are_an_error(tmp_path: Path, checkpoint: Path, capsys) -> None:
    csv = good_csv(tmp_path)
    assert main(["evaluate", "--data", str(csv), "--model", str(checkpoint), "--ferplus-votes", "v.csv"]) == 2
    assert "--ferplus-votes applies only to FER+ labels; these are fer2013's" in capsys.readouterr().err

"""`fer evaluate --data`: any model on any labelled data, to measure how it transfers.

The data is a FER-2013 CSV (plain or gzipped; all rows, or one split), with its own labels or the
FER+ majority labels of a votes file, or a folder of class folders named in any common spelling
(angry/anger, happy/happiness, ...). Each image in a folder is taken as one face, read and resized
to 48x48 grayscale exactly as `fer predict` does. The labels must be the model's class set.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import log_loss

from fer.atomic import write_json
from fer.data import ferplus
from fer.data.reading import load_images, read_csv
from fer.emotions import CLASS_SPELLINGS, LABEL_SETS, SPLITS, USAGE_TO_SPLIT
from fer.errors import FerError
from fer.evaluation.calibration import expected_calibration_error
from fer.evaluation.evaluate import per_class_report
from fer.imaging import IMAGE_SUFFIXES, image_files
from fer.inference.models import load_classifier

SPLIT_NAMES = {**USAGE_TO_SPLIT, **{split: split for split in SPLITS}}  # PublicTest or valid, ...


def label_set_of(classes: Sequence[str]) -> str | None:
    """The name of the label set with exactly these classes, if any."""
    return next((name for name, names in LABEL_SETS.items() if tuple(classes) == names), None)


def read_labelled_csv(path: Path, split: str | None, classes: Sequence[str],
                      votes: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The CSV's images with the labels of the model's label set: its own (FER-2013) or FER+'s."""
    labels = label_set_of(classes)
    if labels is None:
        raise FerError(f"{path}: the model's classes ({', '.join(classes)}) are no label set that a CSV can "
                       f"supply ({', '.join(LABEL_SETS)}); evaluate it on class folders")
    data = read_csv(path)
    if labels == "ferplus":
        if votes is None:
            raise FerError(f"{path}: the model predicts FER+'s classes; give the FER+ votes file with --ferplus-votes")
        data = ferplus.relabel(data, ferplus.read_votes(votes), str(path))
    if split is None:
        return data.all_images, data.all_labels
    return data.images[SPLIT_NAMES[split]], data.labels[SPLIT_NAMES[split]]


def _image_files(folder: Path) -> list[Path]:
    return [path for path in image_files(folder) if not path.name.startswith(".")]


def read_class_folders(root: Path, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels (indices into `class_names`) from root/<class>/...; other folders are named
    in one warning and left out."""
    class_of_folder = {spelling: label for label, name in enumerate(class_names)
                       for spelling in CLASS_SPELLINGS.get(name, (name.lower(),))}
    classes, left_out = [], {}
    for folder in sorted(child for child in root.iterdir() if child.is_dir() and not child.name.startswith(".")):
        label = class_of_folder.get(folder.name.lower())
        if label is None:
            left_out[folder.name] = len(_image_files(folder))
        else:
            classes.append((folder, label))
    if left_out:
        listed = ", ".join(f"{name} ({count} images)" for name, count in left_out.items())
        print(f"fer: warning: {root}: left out folders that name no emotion of the model: {listed}", file=sys.stderr)
    if not classes:
        raise FerError(f"{root}: no class folders (expected names such as {', '.join(class_of_folder)})")
    files = [(path, label) for folder, label in classes for path in _image_files(folder)]
    if not files:
        raise FerError(f"{root}: the class folders hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images, _ = load_images([path for path, _ in files])
    return images, np.array([label for _, label in files], np.int64)


def read_labelled(data: Path, split: str | None, classes: Sequence[str],
                  votes: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    if not data.exists():
        raise FerError(f"{data}: no such file or folder")
    if split is not None and split not in SPLIT_NAMES:
        raise FerError(f"unknown --split '{split}' (known: {', '.join(SPLIT_NAMES)})")
    if data.is_dir():
        if split is not None:
            raise FerError(f"{data}: --split applies to a CSV; for a folder, name the folder of the split")
        return read_class_folders(data, classes)
    if not data.name.lower().endswith((".csv", ".csv.gz")):
        raise FerError(f"{data}: not a .csv, .csv.gz or folder of class folders")
    return read_labelled_csv(data, split, classes, votes)


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return log_loss(labels, probabilities, labels=list(range(probabilities.shape[1])))


def score(models: Sequence[str], data: Path, split: str | None = None, tta: str = "none",
          votes: Path | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, the per-class report and calibration on the labelled data, of one model
    or of the ensemble of several (their calibrated probabilities averaged)."""
    classifiers = [load_classifier(model) for model in models]
    classes = classifiers[0].classes
    for model, classifier in zip(models, classifiers):
        if classifier.classes != classes:
            raise FerError(f"{model}: predicts {', '.join(classifier.classes)}, but {models[0]} predicts "
                           f"{', '.join(classes)}: an ensemble needs one class set")
    images, labels = read_labelled(data, split, classes, votes)
    calibrated = [c.predict_proba(images, tta=tta) for c in classifiers]
    # A model without a temperature is its own uncalibrated self: no second pass for it.
    uncalibrated = [p if c.temperature == 1.0 else replace(c, temperature=1.0).predict_proba(images, tta=tta)
                    for c, p in zip(classifiers, calibrated)]
    probabilities, uncalibrated = np.mean(calibrated, axis=0), np.mean(uncalibrated, axis=0)
    # The log-loss is what temperature scaling minimises; the ECE is what a reader of probabilities feels.
    ece = {f"{name}{suffix}": round(float(measure(p, labels)), 6)
           for name, measure in (("expected_calibration_error", expected_calibration_error), ("log_loss", nll))
           for suffix, p in (("", probabilities), ("_at_temperature_1", uncalibrated))}
    return {"model": " + ".join(map(str, models)), "data": str(data), "split": split, "tta": tta,
            "images": len(labels), "classes": list(classes), "temperature": [c.temperature for c in classifiers],
            **ece, **per_class_report(labels, probabilities.argmax(axis=1), classes)}


def format_report(result: dict[str, Any]) -> str:
    lines = [f"{result['model']} on {result['data']}" + (f" ({result['split']})" if result["split"] else "")
             + f": {result['images']} images, accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f}, "
             f"ECE {result['expected_calibration_error']:.4f}",
             f"{'class':<10} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for emotion in result["classes"]:
        scores = result["per_class"][emotion]
        lines.append(f"{emotion:<10} {scores['precision']:>9.4f} {scores['recall']:>7.4f} {scores['f1']:>7.4f} "
                     f"{scores['support']:>8}")
    return "\n".join(lines)


def run(data: str | Path, models: Sequence[str], split: str | None = None, json_out: str | None = None,
        tta: str = "none", ferplus_votes: str | None = None) -> int:
    result = score(models, Path(data), split, tta, None if ferplus_votes is None else Path(ferplus_votes))
    print(format_report(result))
    if json_out is not None:
        write_json(json_out, result)
    return 0

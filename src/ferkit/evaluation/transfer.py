"""`fer evaluate --data`: any model on any labelled data, to measure how it transfers.

The data is read by ferkit.data.labelled, as `fer preprocess` reads it: a FER-2013 CSV (plain or
gzipped; all rows, or one split), with its own labels or the FER+ majority labels of a votes file;
the Kaggle image folder (train/ and test/); or a folder of class folders. Class folders may use any
common spelling (angry/anger, happy/happiness, ...). Each image in a folder is taken as one face,
read and resized to 48x48 grayscale exactly as `fer predict` does. The labels must be the model's
class set, though not every class need be present: macro-F1 averages over the classes that are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import log_loss

from ferkit.atomic import write_json
from ferkit.data.labelled import read_labelled
from ferkit.errors import FerError
from ferkit.evaluation.calibration import expected_calibration_error
from ferkit.evaluation.evaluate import per_class_report
from ferkit.inference.models import Classifier, load_classifier


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return log_loss(labels, probabilities, labels=list(range(probabilities.shape[1])))


def load_ensemble(models: Sequence[str | os.PathLike]) -> list[Classifier]:
    """The classifiers of `models`, which must predict one class set (an ensemble averages their probabilities)."""
    classifiers = [load_classifier(model) for model in models]
    classes = classifiers[0].classes
    for model, classifier in zip(models, classifiers):
        if classifier.classes != classes:
            raise FerError(f"{model}: predicts {', '.join(classifier.classes)}, but {models[0]} predicts "
                           f"{', '.join(classes)}: an ensemble needs one class set")
    return classifiers


def score(models: Sequence[str], data: Path, split: str | None = None, tta: str = "none",
          votes: Path | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, the per-class report and calibration on the labelled data, of one model
    or of the ensemble of several (their calibrated probabilities averaged). Macro-F1 and the per-class
    report cover the classes present in the labels; the model's others are listed in "classes_absent"."""
    classifiers = load_ensemble(models)
    images, labels = read_labelled(data, classifiers[0].classes, split, votes)
    return score_arrays(models, images, labels, str(data), split, tta, classifiers)


def score_arrays(models: Sequence[str | os.PathLike], images: np.ndarray, labels: np.ndarray, data: str,
                 split: str | None = None, tta: str = "none",
                 classifiers: Sequence[Classifier] | None = None) -> dict[str, Any]:
    """`score` on labelled faces already read: uint8 images (N, 48, 48) and labels indexing the models'
    classes, `data` and `split` naming where they came from. `classifiers` are the models' when loaded."""
    classifiers = load_ensemble(models) if classifiers is None else classifiers
    classes = classifiers[0].classes
    # The calibrated and the uncalibrated probabilities, from one pass of each network.
    passes = [c.predict_proba_at(images, (c.temperature, 1.0), tta=tta) for c in classifiers]
    probabilities, uncalibrated = (np.mean([each[index] for each in passes], axis=0) for index in (0, 1))
    # The log-loss is what temperature scaling minimises; the ECE is what a reader of probabilities feels.
    ece = {f"{name}{suffix}": round(float(measure(p, labels)), 6)
           for name, measure in (("expected_calibration_error", expected_calibration_error), ("log_loss", nll))
           for suffix, p in (("", probabilities), ("_at_temperature_1", uncalibrated))}
    return {"model": " + ".join(map(str, models)), "data": data, "split": split, "tta": tta,
            "images": len(labels), "classes": list(classes), "temperature": [c.temperature for c in classifiers],
            **ece, **per_class_report(labels, probabilities.argmax(axis=1), classes)}


def format_report(result: dict[str, Any]) -> str:
    lines = [f"{result['model']} on {result['data']}" + (f" ({result['split']})" if result["split"] else "")
             + f": {result['images']} images, accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f}, "
             f"ECE {result['expected_calibration_error']:.4f}"]
    if result.get("classes_absent"):
        predicted = ", ".join(f"{name} ({count} predicted)" for name, count in result["predicted_as_absent"].items())
        lines.append(f"macro-F1 over the {len(result['per_class'])} classes present; absent from the labels: "
                     f"{predicted}")
    lines.append(f"{'class':<10} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}")
    for emotion, scores in result["per_class"].items():
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

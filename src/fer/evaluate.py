"""The evaluation stage: score each model's best.pt on valid (PublicTest) and test (PrivateTest).

Per model it writes `metrics/<model>.json` (accuracy, macro-F1 and per-class precision, recall,
F1, accuracy and support, all from scikit-learn), `plots/<model>/confusion.csv` for DVC's
confusion template, and the PNG figures under `plots/figures/`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from fer import figures
from fer.atomic import atomic_dir, atomic_path, write_json
from fer.checkpoint import load_checkpoint, model_from_checkpoint
from fer.emotions import EMOTIONS, NUM_CLASSES
from fer.inference import predict_proba
from fer.loader import load_split
from fer.params import DEFAULT_PARAMS, MODEL_NAMES, stage_params
from fer.runtime import resolve_device, resolve_precision
from fer.train import DATA_DIR, RunPaths

FIGURES_DIR = Path("plots/figures")
EVAL_SPLITS = ("valid", "test")  # PublicTest and PrivateTest


def per_class_report(labels: np.ndarray, predicted: np.ndarray) -> dict[str, dict[str, float]]:
    """Per emotion: precision, recall, F1, accuracy (the share of its images classified right) and support."""
    classes = list(range(NUM_CLASSES))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0)
    return {
        EMOTIONS[c]: {"precision": round(float(precision[c]), 6), "recall": round(float(recall[c]), 6),
                      "f1": round(float(f1[c]), 6), "accuracy": round(float(recall[c]), 6),
                      "support": int(support[c])}
        for c in classes
    }


def split_scores(labels: np.ndarray, plain: np.ndarray, augmented: np.ndarray) -> dict[str, Any]:
    macro = {"average": "macro", "labels": list(range(NUM_CLASSES)), "zero_division": 0}
    return {
        "accuracy": round(float(accuracy_score(labels, plain)), 6),
        "accuracy_tta": round(float(accuracy_score(labels, augmented)), 6),
        "macro_f1": round(float(f1_score(labels, plain, **macro)), 6),
        "macro_f1_tta": round(float(f1_score(labels, augmented, **macro)), 6),
        "per_class": per_class_report(labels, plain),
    }


def evaluate_model(name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]],
                   params: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics for one model, and its plain test-split predictions."""
    path = RunPaths.for_model(name).best
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint, source=str(path))
    device = resolve_device(params["device"])
    options = {"mean": checkpoint["mean"], "std": checkpoint["std"], "batch_size": params["batch_size"],
               "device": device, "precision": resolve_precision("auto", device)}
    metrics: dict[str, Any] = {"best_epoch": checkpoint.get("epoch"), "tta": params["tta"]}
    test_predicted = np.zeros(0, dtype=np.int64)
    for split, (images, labels) in splits.items():
        plain = predict_proba(model, images, tta="none", **options).argmax(axis=1)
        augmented = (plain if params["tta"] == "none"
                     else predict_proba(model, images, tta=params["tta"], **options).argmax(axis=1))
        metrics[split] = split_scores(labels, plain, augmented)
        if split == "test":
            test_predicted = plain
    return metrics, test_predicted


def _write_confusion_csv(path: Path, labels: np.ndarray, predicted: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        writer.writerows((EMOTIONS[a], EMOTIONS[p]) for a, p in zip(labels, predicted))


def _write_figures(results: dict[str, dict[str, Any]], confusions: dict[str, np.ndarray]) -> None:
    curve_files = {name: RunPaths.for_model(name).curves for name in results}
    curves = {name: pd.read_csv(path) for name, path in curve_files.items() if path.exists()}
    with atomic_dir(FIGURES_DIR) as folder:
        if curves:
            figures.plot_curves(curves, folder / "curves.png")
        for name, matrix in confusions.items():
            figures.plot_confusion(matrix, EMOTIONS, f"{name}: PrivateTest, rows normalised",
                                   folder / f"confusion_{name}.png")
        per_class_f1 = {name: [m["test"]["per_class"][e]["f1"] for e in EMOTIONS] for name, m in results.items()}
        figures.plot_f1_bars(per_class_f1, EMOTIONS, folder / "f1_per_class.png")


def run(params_path: Path = DEFAULT_PARAMS, models: list[str] | tuple[str, ...] = MODEL_NAMES,
        data_dir: Path = DATA_DIR) -> dict[str, dict[str, Any]]:
    params = stage_params("evaluate", params_path)
    splits = {split: load_split(data_dir, split) for split in EVAL_SPLITS}
    test_labels = splits["test"][1]
    results, predictions = {}, {}
    # Score every model before writing anything, so a bad checkpoint leaves no partial outputs.
    for name in models:
        results[name], predictions[name] = evaluate_model(name, splits, params)
    for name, metrics in results.items():
        write_json(Path("metrics") / f"{name}.json", metrics)
        _write_confusion_csv(Path("plots") / name / "confusion.csv", test_labels, predictions[name])
        print(f"{name}: PublicTest acc {metrics['valid']['accuracy']:.4f} | PrivateTest acc "
              f"{metrics['test']['accuracy']:.4f} (TTA {metrics['test']['accuracy_tta']:.4f}) "
              f"macro-F1 {metrics['test']['macro_f1']:.4f}")
    _write_figures(results, {name: confusion_matrix(test_labels, predicted, labels=list(range(NUM_CLASSES)))
                             for name, predicted in predictions.items()})
    return results

"""The evaluation stage: score each model's best.pt on valid (PublicTest) and test (PrivateTest).

Per model it writes `metrics/<model>.json`, the few numbers worth comparing across experiments
(accuracy and macro-F1, plain and with TTA, on both splits, and the per-class F1 on PrivateTest);
`reports/<model>.json`, scikit-learn's full per-class report of both splits, plain and with TTA;
`plots/<model>/confusion.csv` for DVC's confusion template; and the PNG figures.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report

from ferkit.atomic import atomic_dir, atomic_path, write_json
from ferkit.choices import MODEL_NAMES
from ferkit.data.arrays import load_classes, load_split
from ferkit.evaluation import figures
from ferkit.inference.proba import predict_proba
from ferkit.layout import DATA_DIR, FIGURES_DIR, RunPaths
from ferkit.models.checkpoint import check_classes, load_checkpoint, model_from_checkpoint
from ferkit.params import DEFAULT_PARAMS, stage_params
from ferkit.runtime import inference_precision, resolve_device

EVAL_SPLITS = ("valid", "test")  # PublicTest and PrivateTest


def per_class_report(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Per class (labels index `classes`): precision, recall, F1 and support; with the accuracy and the macro averages.

    scikit-learn's report, with "f1-score" named "f1" as in the rest of our files. (A per-class
    "accuracy", the share of a class's images classified right, would only repeat its recall.)
    The per-class scores and the macro averages cover the classes present in `labels`: a class the data
    lacks would add an F1 of 0 to the average for images that are not there. Any such class is listed
    under "classes_absent", with how many images were predicted as it under "predicted_as_absent".
    """
    present = np.unique(labels).tolist()
    report = classification_report(labels, predicted, labels=present, target_names=[classes[c] for c in present],
                                   output_dict=True, zero_division=0)
    def rounded(scores: dict[str, float]) -> dict[str, float]:
        return {"precision": round(scores["precision"], 6), "recall": round(scores["recall"], 6),
                "f1": round(scores["f1-score"], 6), "support": int(scores["support"])}

    result = {"accuracy": round(float(accuracy_score(labels, predicted)), 6),
              "macro_f1": round(report["macro avg"]["f1-score"], 6),
              "per_class": {classes[c]: rounded(report[classes[c]]) for c in present},
              "macro_avg": rounded(report["macro avg"]), "weighted_avg": rounded(report["weighted avg"])}
    absent = [c for c in range(len(classes)) if c not in present]
    if absent:  # only then, so that the pipeline's files keep their keys
        result["classes_absent"] = [classes[c] for c in absent]
        result["predicted_as_absent"] = {classes[c]: int(np.count_nonzero(predicted == c)) for c in absent}
    return result


def split_reports(labels: np.ndarray, plain: np.ndarray, augmented: np.ndarray,
                  classes: Sequence[str]) -> dict[str, Any]:
    return {"plain": per_class_report(labels, plain, classes), "tta": per_class_report(labels, augmented, classes)}


def summary_metrics(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What `dvc exp show` compares: 4 scores per split, and the per-class F1 on PrivateTest."""
    metrics: dict[str, Any] = {}
    for split, report in reports.items():
        plain, tta = report["plain"], report["tta"]
        metrics[split] = {"accuracy": plain["accuracy"], "accuracy_tta": tta["accuracy"],
                          "macro_f1": plain["macro_f1"], "macro_f1_tta": tta["macro_f1"]}
    metrics["test"]["f1"] = {emotion: scores["f1"] for emotion, scores in reports["test"]["plain"]["per_class"].items()}
    return metrics


def evaluate_model(name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]], classes: tuple[str, ...],
                   params: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
    """The full report for one model, and its plain test-split predictions."""
    path = RunPaths.for_model(name).best
    checkpoint = load_checkpoint(path)
    header = checkpoint.header
    check_classes(header, classes, str(path), "retrain it (`dvc repro`) after changing data.labels")
    model = model_from_checkpoint(checkpoint, source=str(path))
    device = resolve_device(params["device"])
    options = {"mean": header.mean, "std": header.std, "batch_size": params["batch_size"],
               "device": device, "precision": inference_precision(device)}
    report: dict[str, Any] = {"best_epoch": header.epoch, "tta": params["tta"], "classes": list(classes)}
    test_predicted = np.zeros(0, dtype=np.int64)
    for split, (images, labels) in splits.items():
        plain = predict_proba(model, images, tta="none", **options).argmax(axis=1)
        augmented = (plain if params["tta"] == "none"
                     else predict_proba(model, images, tta=params["tta"], **options).argmax(axis=1))
        report[split] = split_reports(labels, plain, augmented, classes)
        if split == "test":
            test_predicted = plain
    return report, test_predicted


def _write_confusion_csv(path: Path, labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        writer.writerows((classes[a], classes[p]) for a, p in zip(labels, predicted))


def _write_f1_csv(path: Path, f1: dict[str, float]) -> None:
    with atomic_path(path) as tmp:
        pd.Series(f1, name="f1").rename_axis("emotion").to_csv(tmp)


def _write_figures(metrics: dict[str, dict[str, Any]], predictions: dict[str, np.ndarray],
                   test_labels: np.ndarray, classes: Sequence[str]) -> None:
    curve_files = {name: RunPaths.for_model(name).curves for name in metrics}
    curves = {name: pd.read_csv(path) for name, path in curve_files.items() if path.exists()}
    with atomic_dir(FIGURES_DIR) as folder:
        if curves:
            figures.plot_curves(curves, folder / "curves.png")
        for name, predicted in predictions.items():
            figures.plot_confusion(test_labels, predicted, classes, f"{name}: PrivateTest, rows normalised",
                                   folder / f"confusion_{name}.png")
        per_class_f1 = pd.DataFrame({name: m["test"]["f1"] for name, m in metrics.items()})
        figures.plot_f1_bars(per_class_f1, folder / "f1_per_class.png")


def run(params_path: Path = DEFAULT_PARAMS, models: list[str] | tuple[str, ...] = MODEL_NAMES,
        data_dir: Path = DATA_DIR) -> dict[str, dict[str, Any]]:
    params = stage_params("evaluate", params_path)
    _, classes = load_classes(data_dir)
    splits = {split: load_split(data_dir, split) for split in EVAL_SPLITS}
    test_labels = splits["test"][1]
    reports, predictions = {}, {}
    # Score every model before writing anything, so a bad checkpoint leaves no partial outputs.
    for name in models:
        reports[name], predictions[name] = evaluate_model(name, splits, classes, params)
    results = {name: summary_metrics({split: report[split] for split in EVAL_SPLITS})
               for name, report in reports.items()}
    for name, metrics in results.items():
        paths = RunPaths.for_model(name)
        write_json(paths.metrics, metrics)
        write_json(paths.report, reports[name])
        _write_confusion_csv(paths.confusion, test_labels, predictions[name], classes)
        _write_f1_csv(paths.f1, metrics["test"]["f1"])
        print(f"{name}: PublicTest acc {metrics['valid']['accuracy']:.4f} | PrivateTest acc "
              f"{metrics['test']['accuracy']:.4f} (TTA {metrics['test']['accuracy_tta']:.4f}) "
              f"macro-F1 {metrics['test']['macro_f1']:.4f}")
    _write_figures(results, predictions, test_labels, classes)
    return results

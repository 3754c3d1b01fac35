"""PNG figures drawn with matplotlib, since `dvc plots show` HTML needs a CDN to render."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def plot_curves(curves: dict[str, pd.DataFrame], path: Path) -> None:
    """Loss and accuracy per epoch, train (dashed) against validation (solid), one colour per model."""
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for colour, (name, frame) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], curves.items()):
        for axis, metric in ((loss_axis, "loss"), (acc_axis, "acc")):
            axis.plot(frame["epoch"], frame[f"train_{metric}"], "--", color=colour, label=f"{name} train")
            axis.plot(frame["epoch"], frame[f"val_{metric}"], "-", color=colour, label=f"{name} valid")
    loss_axis.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    acc_axis.set(title="Accuracy", xlabel="epoch", ylabel="accuracy")
    for axis in (loss_axis, acc_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    _save(figure, path)


def plot_confusion(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str], title: str,
                   path: Path) -> None:
    """The confusion matrix as a heatmap, each actual-class row normalised to sum to one."""
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    ConfusionMatrixDisplay.from_predictions(
        labels, predicted, labels=list(range(len(classes))), display_labels=classes, normalize="true",
        values_format=".2f", cmap="Blues", im_kw={"vmin": 0, "vmax": 1}, xticks_rotation=45, ax=axis)
    axis.set(xlabel="predicted", ylabel="actual", title=title)
    _save(figure, path)


def plot_f1_bars(f1: pd.DataFrame, path: Path) -> None:
    """Per-class F1 on PrivateTest: one row per class, one column (bar colour) per model."""
    axis = f1.plot.bar(figsize=(9, 4), ylim=(0, 1), ylabel="F1", title="Per-class F1 on PrivateTest", rot=0)
    axis.grid(axis="y", alpha=0.3)
    _save(axis.figure, path)


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

"""PNG figures drawn with matplotlib, since `dvc plots show` HTML needs a CDN to render."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


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


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], title: str, path: Path) -> None:
    """Heatmap of the confusion matrix with each actual-class row normalised to sum to one."""
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(classes)):
        for col in range(len(classes)):
            value = normalised[row, col]
            axis.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                      color="white" if value > 0.5 else "black")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set(xlabel="predicted", ylabel="actual", title=title)
    figure.colorbar(image, ax=axis, fraction=0.046)
    _save(figure, path)


def plot_f1_bars(f1_by_model: dict[str, Sequence[float]], classes: Sequence[str], path: Path) -> None:
    """Per-class F1 on PrivateTest, the models side by side."""
    figure, axis = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(f1_by_model), 1)
    positions = np.arange(len(classes))
    for index, (name, scores) in enumerate(f1_by_model.items()):
        axis.bar(positions + (index - (len(f1_by_model) - 1) / 2) * width, scores, width, label=name)
    axis.set_xticks(positions, classes)
    axis.set(ylim=(0, 1), ylabel="F1", title="Per-class F1 on PrivateTest")
    axis.grid(axis="y", alpha=0.3)
    axis.legend()
    _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

"""Where the pipeline's files live, relative to the project root; `dvc.yaml` declares the same paths
as stage outputs (a test checks that the two agree)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SYNTHETIC_CSV = Path("data/synthetic/fer2013.csv")
SYNTHETIC_VOTES = Path("data/synthetic/fer2013new.csv")  # FER+-style votes for it, row for row
DATA_DIR = Path("data/processed")
DATA_METRICS = Path("metrics/data.json")
FIGURES_DIR = Path("plots/figures")


@dataclass(frozen=True)
class RunPaths:
    """One model's files: checkpoints, training curves, and its training and evaluation results."""

    last: Path
    best: Path
    curves: Path
    train_metrics: Path
    train_summary: Path
    metrics: Path
    report: Path
    confusion: Path
    f1: Path

    @classmethod
    def for_model(cls, name: str, root: Path = Path(".")) -> RunPaths:
        models, plots, metrics = root / "models" / name, root / "plots" / name, root / "metrics"
        return cls(last=models / "last.pt", best=models / "best.pt", curves=plots / "train_curves.csv",
                   train_metrics=metrics / f"{name}_train.json", train_summary=models / "train_summary.json",
                   metrics=metrics / f"{name}.json", report=root / "reports" / f"{name}.json",
                   confusion=plots / "confusion.csv", f1=plots / "f1.csv")

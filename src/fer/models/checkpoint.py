"""Checkpoints hold tensors and plain data only, so they load with `torch.load(weights_only=True)`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer.atomic import atomic_path
from fer.choices import MODEL_NAMES
from fer.emotions import FER2013_CLASSES
from fer.errors import FerError, first_line
from fer.models.networks import build_model

FORMAT = "fer-checkpoint/1"
REQUIRED_KEYS = ("format", "model", "dropout", "state_dict", "mean", "std")


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """Write atomically: a run killed mid-save keeps the previous checkpoint intact."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **checkpoint}, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FerError(f"{path}: checkpoint does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or corrupt files
        raise FerError(f"{path}: not a readable fer checkpoint ({first_line(error)})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise FerError(f"{path}: not a fer checkpoint (expected format '{FORMAT}')")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise FerError(f"{path}: checkpoint lacks '{missing[0]}'")
    if checkpoint["model"] not in MODEL_NAMES:
        raise FerError(f"{path}: checkpoint is for unknown model '{checkpoint['model']}'")
    classes = checkpoint.setdefault("classes", list(FER2013_CLASSES))  # older checkpoints are all FER-2013's
    if not isinstance(classes, list) or not classes or not all(isinstance(name, str) for name in classes):
        raise FerError(f"{path}: checkpoint's 'classes' is not a list of class names")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Rebuild the network in eval mode from a loaded checkpoint."""
    model = build_model(checkpoint["model"], len(checkpoint["classes"]), dropout=float(checkpoint["dropout"]),
                        width=float(checkpoint.get("width", 1.0)))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise FerError(f"{source}: weights do not fit model '{checkpoint['model']}' ({first[:160]})") from None
    return model.eval()

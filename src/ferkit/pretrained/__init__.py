"""Trained weights that ship with the package; `ferkit.choices.SHIPPED_MODELS` names them and
docs/MODEL_CARD.md describes them."""

from __future__ import annotations

import os
from pathlib import Path

from ferkit.choices import SHIPPED_MODELS
from ferkit.errors import FerError

PRETRAINED_DIR = Path(__file__).parent


def model_file(model: str | os.PathLike) -> Path:
    """The file behind a model argument (`--model`, `train.init`): a shipped model's name, or a path."""
    if str(model) in SHIPPED_MODELS:
        path = PRETRAINED_DIR / f"{model}.pt"
        if not path.is_file():
            raise FerError(f"{path}: the shipped model '{model}' is missing from this installation")
        return path
    path = Path(model)
    if not path.is_file():
        raise FerError(f"{path}: no such model file, and not a shipped model ({', '.join(SHIPPED_MODELS)})")
    return path

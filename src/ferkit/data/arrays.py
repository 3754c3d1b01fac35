"""The processed dataset on disk, written by `fer preprocess` and read by training and evaluation:
`<split>_images.npy` (uint8, N x 48 x 48), `<split>_labels.npy` (int64, N), `classes.json` (the
label set and its class names, which the labels index) and `train_probabilities.npy` (float32,
N x classes: each training image's label distribution, one-hot unless the labels come from votes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ferkit.emotions import IMAGE_SIZE
from ferkit.errors import FerError

CLASSES_FILE = "classes.json"
PROBABILITIES_FILE = "train_probabilities.npy"


def _missing(path: Path) -> FerError:
    return FerError(f"{path}: missing; run `fer preprocess` (or `dvc repro preprocess`) first")


def _load_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise _missing(path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise FerError(f"{path}: not a readable .npy array ({error})") from None


def load_classes(data_dir: str | Path) -> tuple[str, tuple[str, ...]]:
    """The label set's name and its class names, from classes.json."""
    path = Path(data_dir) / CLASSES_FILE
    if not path.is_file():
        raise _missing(path)
    try:
        content = json.loads(path.read_text())
        labels, classes = content["labels"], tuple(content["classes"])
    except (ValueError, KeyError, TypeError) as error:
        raise FerError(f"{path}: not a classes file ({error})") from None
    if not classes or not all(isinstance(name, str) for name in classes):
        raise FerError(f"{path}: 'classes' must be a non-empty list of names")
    return str(labels), classes


def classes_json(labels: str, classes: tuple[str, ...]) -> dict[str, object]:
    return {"labels": labels, "classes": list(classes)}


def load_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read `<split>_images.npy` and `<split>_labels.npy` as written by `fer preprocess`."""
    data_dir = Path(data_dir)
    images = _load_array(data_dir / f"{split}_images.npy")
    labels = _load_array(data_dir / f"{split}_labels.npy")
    count = len(load_classes(data_dir)[1])
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise FerError(f"{data_dir}/{split}_images.npy: expected uint8 (N,48,48), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or labels.size and not 0 <= labels.min() <= labels.max() < count:
        raise FerError(f"{data_dir}/{split}_labels.npy: expected {len(images)} labels in 0-{count - 1}")
    return images, labels.astype(np.int64)


def load_probabilities(data_dir: str | Path, labels: np.ndarray) -> np.ndarray:
    """train_probabilities.npy, checked against the training labels it belongs with."""
    path = Path(data_dir) / PROBABILITIES_FILE
    probabilities = _load_array(path)
    count = len(load_classes(data_dir)[1])
    if probabilities.shape != (len(labels), count) or probabilities.dtype != np.float32:
        raise FerError(f"{path}: expected float32 ({len(labels)},{count}), got {probabilities.dtype} "
                       f"{probabilities.shape}")
    return probabilities

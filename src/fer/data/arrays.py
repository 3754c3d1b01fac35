"""The processed dataset on disk: `<split>_images.npy` (uint8, N x 48 x 48) and `<split>_labels.npy`
(int64, N), written by `fer preprocess` and read by training and evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer.emotions import IMAGE_SIZE, NUM_CLASSES
from fer.errors import FerError


def load_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read `<split>_images.npy` and `<split>_labels.npy` as written by `fer preprocess`."""
    arrays = []
    for kind in ("images", "labels"):
        path = Path(data_dir) / f"{split}_{kind}.npy"
        if not path.is_file():
            raise FerError(f"{path}: missing; run `fer preprocess` (or `dvc repro preprocess`) first")
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except (ValueError, OSError) as error:
            raise FerError(f"{path}: not a readable .npy array ({error})") from None
    images, labels = arrays
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise FerError(f"{data_dir}/{split}_images.npy: expected uint8 (N,48,48), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or labels.size and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
        raise FerError(f"{data_dir}/{split}_labels.npy: expected {len(images)} labels in 0-6")
    return images, labels.astype(np.int64)

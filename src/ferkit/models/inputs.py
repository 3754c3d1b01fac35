"""What the networks take as input: uint8 faces scaled to [0, 1] and standardised with the training
split's mean and std, which travel inside every checkpoint and ONNX file."""

from __future__ import annotations

import numpy as np
import torch


def train_statistics(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of uint8 training images on the [0, 1] scale, for `normalize`."""
    return float(images.mean() / 255.0), float(images.std() / 255.0) or 1.0


def normalize(images: torch.Tensor, mean: float, std: float, channels_last: bool) -> torch.Tensor:
    """uint8 (B,48,48) -> float (B,1,48,48) scaled to [0,1], then standardised with the train statistics."""
    x = images.unsqueeze(1).float().div_(255.0).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

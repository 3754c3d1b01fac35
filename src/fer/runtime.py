"""Where and how tensors run: device choice, autocast precision and CPU threads."""

from __future__ import annotations

import os

import torch

from fer.errors import FerError


def resolve_device(choice: str) -> torch.device:
    """'auto' takes CUDA when there is one; asking for CUDA without one is an error, not a fallback."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise FerError("device 'cuda' was asked for, but torch sees no CUDA GPU (use device: auto or cpu)")
    return torch.device(choice)


def resolve_precision(choice: str, device: torch.device) -> str:
    if choice == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return choice


def set_cpu_threads(threads: int) -> int:
    """Pin the intra-op thread count so CPU results do not depend on what else the machine runs."""
    count = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(count)
    return count

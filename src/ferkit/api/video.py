"""Faces in a video file, found, tracked and classified frame by frame: what `fer predict` on a video
and `ferkit.Analyzer.analyze_video` run.

Frames are decoded by OpenCV's FFmpeg backend in a reader thread and searched for faces by two
more threads (decoding and searching release the GIL), a few frames ahead of the main thread, which
classifies and tracks them in order. Every analysed frame's faces go straight to the caller
(`fer predict`'s --csv file, the API's table); the annotated copy and the per-track summary are written when the
video ends, also when it ends early because the file is cut short.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ferkit.api.results import class_colour, draw_faces
from ferkit.atomic import atomic_path
from ferkit.choices import SMOOTH_SECONDS, default_detector
from ferkit.errors import FerError, first_line
from ferkit.inference.detectors import Box, make_detector
from ferkit.inference.faces import Face, classify_faces, find_faces
from ferkit.inference.models import Classifier
from ferkit.inference.tracking import Tracker

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
ANNOTATED_SUFFIX = ".mp4"
ANNOTATED_CODEC = "mp4v"  # MPEG-4 Part 2: in every opencv-python wheel, read by common players
DEFAULT_FPS = 30.0  # for a file that does not say its frame rate
READ_AHEAD = 8  # decoded frames waiting for analysis, at most
DETECT_THREADS = 2  # frames searched at once: the machines this runs on have 2 cores or more
MAX_PLOTTED_TRACKS = 6  # --plot: panels per figure, for the tracks seen longest


# FFmpeg's own lines about a damaged file ("moov atom not found") off: fer's one warning names the
# file instead. OpenCV reads this once, when its FFmpeg backend is first used in the process.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


# Called with each analysed frame's index, its time in seconds and its faces (with tracks), in order.
OnFrame = Callable[[int, float, list[Face]], None]


class BadVideo(FerError):
    """A file that cannot be read as a video. `reason` is why, without the file name; the message
    names the file when it is given (as the API gives it), for `fer predict`'s warning adds it."""

    def __init__(self, reason: str, path: Path | None = None) -> None:
        super().__init__(reason if path is None else f"{path}: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class VideoOptions:
    detector: str = field(default_factory=default_detector)
    every: int = 1          # analyse one frame in `every`
    smooth: float = SMOOTH_SECONDS  # seconds of probabilities averaged per track; 0 = none
    tta: str = "none"
    quiet: bool = False     # no progress bar


@dataclass
class TrackSummary:
    number: int
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    labels: Counter[str] = field(default_factory=Counter)  # analysed frames per (smoothed) emotion
    # (time, smoothed probabilities) per analysed frame, for --plot.
    timeline: list[tuple[float, np.ndarray]] = field(default_factory=list, repr=False)

    @property
    def analysed(self) -> int:
        return sum(self.labels.values())

    @property
    def dominant(self) -> tuple[str, float]:
        """The emotion of most of its analysed frames, and their share."""
        emotion, count = self.labels.most_common(1)[0]
        return emotion, count / self.analysed

    def to_json(self, classes: Sequence[str]) -> dict[str, Any]:
        return {"track": self.number, "first_frame": self.first_frame, "last_frame": self.last_frame,
                "first_time": round(self.first_time, 3), "last_time": round(self.last_time, 3),
                "analysed_frames": self.analysed, "dominant_emotion": self.dominant[0],
                "share": {name: round(self.labels[name] / self.analysed, 4) for name in classes}}


@dataclass
class VideoResult:
    path: Path
    width: int
    height: int
    fps: float
    fps_known: bool             # False: the file does not say its frame rate, DEFAULT_FPS is assumed
    frames: int                 # frames read
    analysed: int               # frames analysed (one in `every`)
    stopped_early: str | None   # why reading stopped before the frame count the file gives, if it did
    tracks: dict[int, TrackSummary]

    def to_json(self, classes: Sequence[str]) -> dict[str, Any]:
        return {"path": str(self.path), "width": self.width, "height": self.height, "fps": round(self.fps, 3),
                "fps_assumed": not self.fps_known, "frames": self.frames, "analysed_frames": self.analysed,
                "stopped_early": self.stopped_early,
                "tracks": [track.to_json(classes) for track in self.tracks.values()]}


@dataclass(frozen=True)
class _Stream:
    capture: cv2.VideoCapture
    width: int
    height: int
    fps: float
    fps_known: bool       # False: the file does not say, and DEFAULT_FPS is assumed
    declared_frames: int  # from the container; 0 when it does not say


def _open(path: Path) -> _Stream:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise BadVideo("not a readable video (unknown format or damaged file)")
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width <= 0 or height <= 0:
        capture.release()
        raise BadVideo("not a readable video (no picture size)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    # Some containers say nothing (0), and OpenCV reports 1000 for some WebM files that do not say.
    known = bool(np.isfinite(fps) and 0 < fps < 1000)
    return _Stream(capture, width, height, fps if known else DEFAULT_FPS, known,
                   max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0))


def _frames(capture: cv2.VideoCapture, problems: list[str]) -> Iterator[np.ndarray]:
    """Decoded BGR frames, read ahead by a thread until the stream ends or the consumer stops.
    A decoder that fails ends the stream as a cut-short file does; its message joins `problems`."""
    frames: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                ok, frame = capture.read()
                if not ok:
                    break
                frames.put(frame)
        except Exception as error:  # cv2.error, MemoryError from a corrupt frame size, ...
            problems.append(first_line(error))
        finally:
            frames.put(None)  # the consumer's cleanup drains the queue if it is full

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while (frame := frames.get()) is not None:
            yield frame
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                frames.get_nowait()
            except queue.Empty:
                reader.join(0.01)


class _Annotator:
    """The annotated copy: every input frame, with the latest analysed faces drawn on it."""

    def __init__(self, tmp: Path, stream: _Stream) -> None:
        fourcc = cv2.VideoWriter.fourcc(*ANNOTATED_CODEC)
        self.writer = cv2.VideoWriter(str(tmp), cv2.CAP_FFMPEG, fourcc, stream.fps, (stream.width, stream.height))
        if not self.writer.isOpened():
            raise FerError(f"{tmp}: cannot open an {ANNOTATED_CODEC} video writer")

    def add(self, frame: np.ndarray, faces: Sequence[Face]) -> None:
        self.writer.write(draw_faces(frame, faces) if faces else frame)

    def close(self) -> None:
        self.writer.release()


def _summarise(tracks: dict[int, TrackSummary], faces: Sequence[Face], frame: int, time: float) -> None:
    for face in faces:
        assert face.track is not None
        summary = tracks.get(face.track)
        if summary is None:
            summary = tracks[face.track] = TrackSummary(face.track, frame, frame, time, time)
        summary.last_frame, summary.last_time = frame, time
        summary.labels[face.emotion] += 1
        summary.timeline.append((time, face.probabilities))


def _searched(frames: Iterator[np.ndarray], options: VideoOptions
              ) -> Iterator[tuple[int, np.ndarray, list[tuple[Box, np.ndarray]] | None]]:
    """(index, frame, its faces found, or None when it is not analysed), in order. Searching is most of
    a frame's cost, and dlib and OpenCV release the GIL while they search, so DETECT_THREADS frames
    are searched at once, each thread with its own detector, a few frames ahead of the consumer."""
    local = threading.local()

    def search(frame: np.ndarray) -> list[tuple[Box, np.ndarray]]:
        if not hasattr(local, "detector"):
            local.detector = make_detector(options.detector)
        return find_faces(frame, local.detector)

    with ThreadPoolExecutor(DETECT_THREADS) as pool:
        pending: deque[tuple[int, np.ndarray, Future | None]] = deque()
        for index, frame in enumerate(frames):
            pending.append((index, frame, pool.submit(search, frame) if index % options.every == 0 else None))
            while len(pending) > READ_AHEAD or (pending and pending[0][2] is None):
                done, image, future = pending.popleft()
                yield done, image, None if future is None else future.result()
        for done, image, future in pending:
            yield done, image, None if future is None else future.result()


def _analyse_frame(found: list[tuple[Box, np.ndarray]], time: float, classifier: Classifier,
                   tracker: Tracker, tta: str) -> list[Face]:
    """The frame's faces, each with its track number and smoothed probabilities."""
    raw = classify_faces(found, classifier, tta)
    tracks = tracker.assign([face.box for face in raw], time)
    return [Face(face.box, tracker.smooth(track, face.probabilities, time), face.classes, track.number)
            for face, track in zip(raw, tracks)]


# The two settings below belong to the whole process, and an Analyzer may analyse videos on several
# threads at once: the first video to start sets them and the last to end restores them, so that
# none restores a value that another set.
_SETTINGS_LOCK = threading.Lock()
_videos_running = 0
_saved_settings: tuple[int, int] = (0, 0)


def _set_settings(log_level: int, torch_threads: int) -> None:
    cv2.utils.logging.setLogLevel(log_level)
    torch.set_num_threads(torch_threads)


@contextlib.contextmanager
def _video_settings() -> Iterator[None]:
    """OpenCV's own warnings off while it reads, for the same reason as FFmpeg's above; and one torch
    thread: a frame's one or two faces are too small a batch to share out, and a second torch thread
    only waits for the first (and spins for a core the decoder thread needs). On 2 busy cores, 640x360
    frames went at 4 frames/s with torch's 2 threads against 30 with one (benchmarks/video.py)."""
    global _videos_running, _saved_settings
    with _SETTINGS_LOCK:
        if _videos_running == 0:
            _saved_settings = cv2.utils.logging.getLogLevel(), torch.get_num_threads()
            _set_settings(cv2.utils.logging.LOG_LEVEL_SILENT, 1)
        _videos_running += 1
    try:
        yield
    finally:
        with _SETTINGS_LOCK:
            _videos_running -= 1
            if _videos_running == 0:
                _set_settings(*_saved_settings)


def analyse_video(path: Path, classifier: Classifier, options: VideoOptions, on_frame: OnFrame | None = None,
                  annotated: Path | None = None) -> VideoResult:
    """Read, analyse and (with `annotated`) draw every frame; each analysed frame's faces go to
    `on_frame(frame, time, faces)` as they come. Raises BadVideo when no frame can be read."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_video_settings())
        stream = _open(path)
        stack.callback(stream.capture.release)
        if annotated is None:
            return _analyse(path, stream, classifier, options, on_frame, None)
        with atomic_path(annotated, suffix=ANNOTATED_SUFFIX) as tmp:
            annotator = _Annotator(tmp, stream)
            try:
                return _analyse(path, stream, classifier, options, on_frame, annotator)
            finally:
                annotator.close()  # before the rename, so the file is complete


def _analyse(path: Path, stream: _Stream, classifier: Classifier, options: VideoOptions,
             on_frame: OnFrame | None, annotator: _Annotator | None) -> VideoResult:
    tracker = Tracker(options.smooth)
    tracks: dict[int, TrackSummary] = {}
    faces: list[Face] = []
    frames = analysed = 0
    problems: list[str] = []
    with tqdm(total=stream.declared_frames or None, desc=path.name, unit="frame", leave=False,
              disable=True if options.quiet else None) as progress:
        for index, frame, found in _searched(_frames(stream.capture, problems), options):
            frames = index + 1
            if found is not None:
                time = index / stream.fps
                faces = _analyse_frame(found, time, classifier, tracker, options.tta)
                analysed += 1
                _summarise(tracks, faces, index, time)
                if on_frame is not None:
                    on_frame(index, time, faces)
            if annotator is not None:
                annotator.add(frame, faces)  # between analysed frames the last boxes hold
            progress.update()
    if frames == 0:
        raise BadVideo("no frame could be decoded" + (f" ({problems[0]})" if problems else ""))
    stopped = None
    if problems or frames < stream.declared_frames:
        why = f"decoder failed: {problems[0]}" if problems else "file cut short or damaged"
        stopped = f"stopped at frame {frames} of {stream.declared_frames} ({why}); results cover frames 0-{frames - 1}"
    return VideoResult(path, stream.width, stream.height, stream.fps, stream.fps_known, frames, analysed, stopped,
                       tracks)


def plot_timeline(result: VideoResult, classes: Sequence[str], path: Path) -> None:
    """One panel per track (the longest first, at most MAX_PLOTTED_TRACKS): each class's (smoothed)
    probability over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest = sorted(result.tracks.values(), key=lambda t: -len(t.timeline))[:MAX_PLOTTED_TRACKS]
    tracks = sorted(longest, key=lambda t: t.number)
    figure, axes = plt.subplots(max(len(tracks), 1), 1, figsize=(9, 1.2 + 2.0 * max(len(tracks), 1)),
                                sharex=True, squeeze=False)
    for axis, track in zip(axes[:, 0], tracks):
        times = [time for time, _ in track.timeline]
        values = np.stack([p for _, p in track.timeline])
        for column, name in enumerate(classes):
            blue, green, red = class_colour(name)
            axis.plot(times, values[:, column], label=name, color=(red / 255, green / 255, blue / 255), lw=1.3)
        axis.set_ylim(0, 1)
        axis.set_ylabel(f"track {track.number}\nprobability")
        axis.grid(alpha=0.3)
    if not tracks:
        axes[0, 0].text(0.5, 0.5, "no face found", ha="center", va="center", transform=axes[0, 0].transAxes)
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 0].set_xlim(0, max(result.frames / result.fps, 1 / result.fps))
    axes[0, 0].set_title(f"{result.path.name}: emotion per face track over time")
    if tracks:
        axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)


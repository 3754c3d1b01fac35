"""`fer predict`: find the faces in images, videos or folders and classify each face's expression.

It runs through the Python API (ferkit.Analyzer). Each image is decoded and searched for faces on its
own (`Analyzer.detect`); the 48x48 crops then queue up and are classified in batches
(`Analyzer.classify`), so a folder of thousands of images costs one model call per batch. A file that
cannot be used is skipped with a one-line warning, and the exit status says whether any was. Videos
are analysed frame by frame after the images (`Analyzer.stream_video`), with face tracks and
smoothed labels.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from ferkit.api.analyzer import Analyzer, Found, check_count, check_seconds
from ferkit.api.results import CsvRows, csv_rows, draw_faces, image_json
from ferkit.api.video import ANNOTATED_SUFFIX, VIDEO_SUFFIXES, BadVideo, VideoOptions, VideoResult, plot_timeline
from ferkit.atomic import atomic_path, write_json
from ferkit.choices import (
    DETECTORS,
    PHOTO_MODEL,
    SMOOTH_SECONDS,
    TTA_MODES,
    check_choice,
    default_detector,
)
from ferkit.errors import FerError, first_line
from ferkit.imaging import IMAGE_SUFFIXES, BadImage, image_files, read_image
from ferkit.inference.faces import Face

# With --annotate the decoded images wait in memory until their faces are classified; this caps
# that at a few big photos, whatever the batch size.
MAX_HELD_IMAGE_BYTES = 256 * 1024 * 1024
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


@dataclass(frozen=True)
class Source:
    path: Path      # the file to read
    relative: Path  # its place under --annotate DIR: the path within the folder named, or its name

    @property
    def is_video(self) -> bool:
        return self.path.suffix.lower() in VIDEO_SUFFIXES

    @property
    def annotated(self) -> Path:
        """Its annotated copy's place under --annotate DIR. A video's is an .mp4: clip.mp4 keeps its
        name, clip.avi becomes clip.avi.mp4 (so that clip.avi and clip.mp4 do not collide)."""
        if not self.is_video or self.relative.suffix.lower() == ANNOTATED_SUFFIX:
            return self.relative
        return self.relative.with_name(self.relative.name + ANNOTATED_SUFFIX)

    @property
    def plot(self) -> Path:
        """A video's timeline figure under --plot DIR: clip.mp4 -> clip.png, clip.avi -> clip.avi.png."""
        return self.annotated.with_suffix(".png")


@dataclass
class ImageResult:
    source: Source
    width: int
    height: int
    faces: list[Face]


@dataclass
class _Detected:
    """An image whose faces are found and cropped, waiting for its batch to be classified."""

    source: Source
    width: int
    height: int
    faces: list[Found]
    image: np.ndarray | None = field(default=None, repr=False)  # kept only to draw on


def find_images(paths: Sequence[str | os.PathLike], exclude: Iterable[Path | None] = ()) -> list[Source]:
    """The images and videos to read: files as named, folders searched.

    `exclude` (the --annotate and --plot folders) are skipped when they lie inside a folder searched,
    so a rerun does not classify the previous run's drawings.
    """
    excluded = [folder.resolve() for folder in exclude if folder is not None]
    sources, seen = [], set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            root = path.resolve()
            skip = [folder for folder in excluded if folder != root and folder.is_relative_to(root)]
            found = [Source(file, file.relative_to(path)) for file in image_files(path, skip, MEDIA_SUFFIXES)]
        elif path.exists():
            found = [Source(path, Path(path.name))]
        else:
            raise FerError(f"{path}: no such file or folder")
        for source in found:
            if source.path.resolve() not in seen:
                seen.add(source.path.resolve())
                sources.append(source)
    return sources


def _check_targets(sources: Iterable[Source], folder: Path, option: str, target: Callable[[Source], Path]) -> None:
    """Writing over an input, or two inputs written to one file, is a usage error found before any work."""
    owners: dict[Path, Path] = {}
    for source in sources:
        name = target(source)
        if (folder / name).resolve() == source.path.resolve():
            raise FerError(f"{source.path}: its {option} output would overwrite it (choose another {option} folder)")
        if name in owners:
            raise FerError(f"{source.path}: its {option} output would overwrite that of {owners[name]} "
                           "(name the folders that hold them instead)")
        owners[name] = source.path


def _warn(path: Path, problem: str) -> str:
    """Warn in one line, whatever the library's message looked like; returns that line's problem."""
    problem = " ".join(problem.split())
    tqdm.write(f"fer: warning: {path}: {problem}", file=sys.stderr)
    return problem


def _skip(source: Source, problem: str, failures: list[tuple[Source, str]]) -> None:
    """Warn and record the failure."""
    failures.append((source, _warn(source.path, problem)))


def _detect_each(sources: Sequence[Source], analyzer: Analyzer, keep_images: bool,
                 failures: list[tuple[Source, str]], quiet: bool = False) -> Iterator[_Detected]:
    """Decode and search one image at a time; bad files are warned about, recorded and skipped."""
    for source in tqdm(sources, desc="fer predict", unit="image", file=sys.stderr,
                       disable=True if quiet else None):
        try:
            image = read_image(source.path)
        except BadImage as problem:
            _skip(source, str(problem), failures)
            continue
        height, width = image.shape[:2]
        faces = analyzer.detect(image, channels="bgr", name=str(source.path))
        yield _Detected(source, width, height, faces, image if keep_images else None)


def _in_batches(detected: Iterable[_Detected], batch_size: int) -> Iterator[list[_Detected]]:
    """Group images until their faces fill a batch (or their held pixels reach the memory cap)."""
    group: list[_Detected] = []
    faces = held = 0
    for item in detected:
        group.append(item)
        faces += len(item.faces)
        held += item.image.nbytes if item.image is not None else 0
        if faces >= batch_size or held >= MAX_HELD_IMAGE_BYTES:
            yield group
            group, faces, held = [], 0, 0
    if group:
        yield group


def _classify(group: list[_Detected], analyzer: Analyzer) -> list[ImageResult]:
    faces = analyzer.classify([item.faces for item in group])
    return [ImageResult(item.source, item.width, item.height, found) for item, found in zip(group, faces)]


def _write_image(path: Path, image: np.ndarray) -> None:
    """Encode in the format the name says, then write atomically (cv2.imwrite would pick the
    encoder from the temporary file's name)."""
    ok, encoded = cv2.imencode(path.suffix.lower(), image)
    if not ok:
        raise FerError(f"{path}: cannot encode a {path.suffix} image")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def _annotate(item: _Detected, result: ImageResult, folder: Path, failures: list[tuple[Source, str]]) -> None:
    target = folder / item.source.relative
    try:
        _write_image(target, draw_faces(item.image, result.faces))
    except cv2.error as error:
        _skip(item.source, f"cannot write annotated copy {target} ({first_line(error)})", failures)
    except FerError as error:  # names the target already
        _skip(item.source, f"annotated copy: {error}", failures)


def predict_images(sources: Sequence[Source], analyzer: Analyzer, annotate: Path | None = None,
                   rows: CsvRows | None = None, quiet: bool = False
                   ) -> tuple[list[ImageResult], list[tuple[Source, str]]]:
    """Results for the images that could be read, and (source, problem) for those that could not."""
    results: list[ImageResult] = []
    failures: list[tuple[Source, str]] = []
    detected = _detect_each(sources, analyzer, keep_images=annotate is not None, failures=failures, quiet=quiet)
    for group in _in_batches(detected, analyzer.batch_size):
        group_results = _classify(group, analyzer)
        if rows is not None:
            for result in group_results:
                rows.add(result.source.path, 0, 0.0, result.faces)
        if annotate is not None:
            for item, result in zip(group, group_results):
                _annotate(item, result, annotate, failures)
                item.image = None
        results += group_results
    return results, failures


def to_json(results: Sequence[ImageResult], failures: Sequence[tuple[Source, str]], analyzer: Analyzer,
            videos: Sequence[VideoResult] = (), options: VideoOptions | None = None) -> dict[str, Any]:
    options = options or VideoOptions(tta=analyzer.tta)
    return {
        "model": {"path": str(analyzer.model), "name": analyzer.architecture, "kind": analyzer.kind},
        "detector": analyzer.detector,
        "tta": analyzer.tta,
        "emotions": list(analyzer.classes),
        "images": [{"path": str(result.source.path), **image_json(result.width, result.height, result.faces)}
                   for result in results],
        "videos": [video.to_json(analyzer.classes) for video in videos],
        "video_options": {"every": options.every, "smooth_seconds": options.smooth},
        "failed": [{"path": str(source.path), "error": problem} for source, problem in failures],
        "summary": {"images": len(results), "faces": sum(len(result.faces) for result in results),
                    "videos": len(videos), "failed": len(failures)},
    }


def format_table(results: Sequence[ImageResult], failures: Sequence[tuple[Source, str]],
                 classes: Sequence[str]) -> str:
    """One row per face (or per image without one): box, top emotion and every class's probability."""
    rows = []
    for result in results:
        if not result.faces:
            rows.append([str(result.source.path), "-", "-", "no face found"] + [""] * len(classes))
        for number, face in enumerate(result.faces, start=1):
            rows.append([str(result.source.path), str(number), ",".join(map(str, face.box)), face.emotion]
                        + [f"{p:.2f}" for p in face.probabilities])
    header = ["image", "face", "box x,y,w,h", "emotion", *classes]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    left_aligned = {0, 2, 3}
    lines = ["  ".join(cell.ljust(width) if column in left_aligned else cell.rjust(width)
                       for column, (cell, width) in enumerate(zip(row, widths))).rstrip()
             for row in [header, *rows]]
    faces = sum(len(result.faces) for result in results)
    without = sum(not result.faces for result in results)
    lines.append(f"{len(results)} images, {faces} faces, {without} images without a face, "
                 f"{len(failures)} files skipped")
    return "\n".join(lines)


def _check_options(detector: str, tta: str, batch_size: int, options: VideoOptions) -> None:
    """Reject bad options before any file is read, naming them as the command line does."""
    check_choice("--tta mode", tta, TTA_MODES)
    check_choice("face detector", detector, DETECTORS)
    check_count("--batch-size", batch_size)
    check_count("--every", options.every)
    check_seconds("--smooth", options.smooth)


def format_videos(videos: Sequence[VideoResult]) -> str:
    """One line per video, then one per face track: its frames and its dominant emotion."""
    lines = []
    for video in videos:
        lines.append(f"{video.path}: {video.frames} frames ({video.analysed} analysed), {video.fps:g} fps, "
                     f"{video.width}x{video.height}, {len(video.tracks)} face tracks")
        for track in video.tracks.values():
            emotion, share = track.dominant
            lines.append(f"  track {track.number}: frames {track.first_frame}-{track.last_frame} "
                         f"({track.first_time:.1f}-{track.last_time:.1f} s), {emotion} {share:.0%} of the time")
    return "\n".join(lines)


def _prepare_folder(folder: Path, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FerError(f"{folder}: cannot create the {option} folder ({error.strerror or error})") from None


def _write_json(json_out: str, document: dict[str, Any]) -> None:
    if json_out == "-":
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    write_json(json_out, document)


def predict_videos(sources: Sequence[Source], analyzer: Analyzer, options: VideoOptions,
                   rows: CsvRows | None, annotate: Path | None, plot: Path | None,
                   failures: list[tuple[Source, str]]) -> tuple[list[VideoResult], int]:
    """Each readable video's result, and how many stopped early; unreadable ones join `failures`."""
    results, cut_short = [], 0
    for source in sources:
        try:
            result = analyzer.stream_video(source.path, None if rows is None else partial(rows.add, source.path),
                                           options.every, options.smooth,
                                           annotate / source.annotated if annotate is not None else None,
                                           progress=not options.quiet)
            if plot is not None:
                plot_timeline(result, analyzer.classes, plot / source.plot)
        except BadVideo as problem:
            _skip(source, problem.reason, failures)
            continue
        except (FerError, cv2.error) as error:  # an output that cannot be written: this video only
            _skip(source, f"cannot write its output ({first_line(error)})", failures)
            continue
        if result.stopped_early:
            _warn(source.path, result.stopped_early)
            cut_short += 1
        results.append(result)
    return results, cut_short


def run(paths: Sequence[str | os.PathLike], model: str | os.PathLike = PHOTO_MODEL,
        detector: str | None = None, json_out: str | None = None, csv_out: str | os.PathLike | None = None,
        annotate: str | os.PathLike | None = None, plot: str | os.PathLike | None = None, tta: str = "none",
        batch_size: int = 256, every: int | None = None, smooth: float | None = None, quiet: bool = False) -> int:
    """Exit status: 0 when every file was predicted in full, 1 when any was skipped or cut short.
    `every` and `smooth` are None when not given (1 and SMOOTH_SECONDS), so that giving them
    without a video can be refused; `detector` None is the default one."""
    detector = detector or default_detector()
    options = VideoOptions(detector=detector, every=1 if every is None else every,
                           smooth=SMOOTH_SECONDS if smooth is None else smooth, tta=tta, quiet=quiet)
    _check_options(detector, tta, batch_size, options)
    annotate = Path(annotate) if annotate is not None else None
    plot = Path(plot) if plot is not None else None
    sources = find_images(paths, exclude=(annotate, plot))
    if not sources:
        raise FerError(f"no image or video files ({', '.join(sorted(MEDIA_SUFFIXES))}) in "
                       f"{', '.join(map(str, paths))}")
    images = [source for source in sources if not source.is_video]
    videos = [source for source in sources if source.is_video]
    video_only = [name for name, value in (("--plot", plot), ("--every", every), ("--smooth", smooth))
                  if value is not None]
    if video_only and not videos:
        raise FerError(f"{video_only[0]} applies to videos, and no video is among the inputs")
    if annotate is not None:
        _check_targets(sources, annotate, "--annotate", lambda source: source.annotated)
    if plot is not None:
        _check_targets(videos, plot, "--plot", lambda source: source.plot)
    analyzer = Analyzer(model, detector, tta, batch_size)
    for folder, option in ((annotate, "--annotate"), (plot, "--plot")):
        if folder is not None:
            _prepare_folder(folder, option)
    if csv_out is not None:
        _prepare_folder(Path(csv_out).parent, "--csv")
    with csv_rows(Path(csv_out), analyzer.classes) if csv_out is not None else contextlib.nullcontext() as rows:
        results, failures = predict_images(images, analyzer, annotate, rows, quiet)
        video_results, cut_short = predict_videos(videos, analyzer, options, rows, annotate, plot, failures)
    if json_out is not None:
        _write_json(json_out, to_json(results, failures, analyzer, video_results, options))
    if json_out != "-":
        if images or not videos:
            print(format_table(results, failures, analyzer.classes))
            print(f"model {model}, face detector {analyzer.detector}")
        if video_results:
            print(format_videos(video_results))
    return 1 if failures or cut_short else 0

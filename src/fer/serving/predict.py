"""`fer predict`: find the faces in images or folders and classify each face's expression.

Each image is decoded and searched for faces on its own; the 48x48 crops then queue up and go
through `fer.inference.proba.predict_proba` in batches, so a folder of thousands of images costs one
model call per batch. A file that cannot be used is skipped with a one-line warning, and the
exit status says whether any was.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from fer.atomic import atomic_path, write_json
from fer.choices import SHIPPED_MODELS, TTA_MODES, check_choice
from fer.errors import FerError, first_line
from fer.imaging import IMAGE_SUFFIXES, BadImage, image_files, read_image, to_gray
from fer.inference.detectors import Box, Detector, make_detector
from fer.inference.faces import Face, classify_faces, find_faces
from fer.inference.models import Classifier, load_classifier
from fer.serving.results import draw_faces, image_json

# With --annotate the decoded images wait in memory until their faces are classified; this caps
# that at a few big photos, whatever the batch size.
MAX_HELD_IMAGE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    path: Path      # the file to read
    relative: Path  # its place under --annotate DIR: the path within the folder named, or its name


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
    faces: list[tuple[Box, np.ndarray]]
    image: np.ndarray | None = field(default=None, repr=False)  # kept only to draw on


def find_images(paths: Sequence[str | os.PathLike], exclude: Path | None = None) -> list[Source]:
    """The images to read: files as named, folders searched.

    `exclude` (the --annotate folder) is skipped when it lies inside a folder searched, so a rerun
    does not classify the previous run's drawings.
    """
    excluded = exclude.resolve() if exclude is not None else None
    sources, seen = [], set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            root = path.resolve()
            skip = excluded if excluded is not None and excluded != root and excluded.is_relative_to(root) else None
            found = [Source(file, file.relative_to(path)) for file in image_files(path, skip)]
        elif path.exists():
            found = [Source(path, Path(path.name))]
        else:
            raise FerError(f"{path}: no such file or folder")
        for source in found:
            if source.path.resolve() not in seen:
                seen.add(source.path.resolve())
                sources.append(source)
    return sources


def _check_annotation_targets(sources: Iterable[Source], folder: Path) -> None:
    """Drawing over an input, or two inputs drawn to one file, is a usage error found before any work."""
    owners: dict[Path, Path] = {}
    for source in sources:
        if (folder / source.relative).resolve() == source.path.resolve():
            raise FerError(f"{source.path}: its annotated copy would overwrite it (choose another --annotate folder)")
        if source.relative in owners:
            raise FerError(f"{source.path}: its annotated copy would overwrite that of "
                           f"{owners[source.relative]} (name the folders that hold them instead)")
        owners[source.relative] = source.path


def _skip(source: Source, problem: str, failures: list[tuple[Source, str]]) -> None:
    """Warn in one line, whatever the library's message looked like, and record the failure."""
    problem = " ".join(problem.split())
    tqdm.write(f"fer: warning: {source.path}: {problem}", file=sys.stderr)
    failures.append((source, problem))


def _detect_each(sources: Sequence[Source], detector: Detector, keep_images: bool,
                 failures: list[tuple[Source, str]]) -> Iterator[_Detected]:
    """Decode and search one image at a time; bad files are warned about, recorded and skipped."""
    for source in tqdm(sources, desc="fer predict", unit="image", file=sys.stderr, disable=None):
        try:
            image = read_image(source.path)
        except BadImage as problem:
            _skip(source, str(problem), failures)
            continue
        height, width = image.shape[:2]
        faces = find_faces(to_gray(image), detector)
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


def _classify(group: list[_Detected], classifier: Classifier, tta: str, batch_size: int) -> list[ImageResult]:
    faces = classify_faces([face for item in group for face in item.faces], classifier, tta, batch_size)
    results, start = [], 0
    for item in group:
        results.append(ImageResult(item.source, item.width, item.height, faces[start:start + len(item.faces)]))
        start += len(item.faces)
    return results


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


def predict_images(sources: Sequence[Source], classifier: Classifier, detector: Detector, tta: str = "none",
                   batch_size: int = 256, annotate: Path | None = None
                   ) -> tuple[list[ImageResult], list[tuple[Source, str]]]:
    """Results for the images that could be read, and (source, problem) for those that could not."""
    results: list[ImageResult] = []
    failures: list[tuple[Source, str]] = []
    detected = _detect_each(sources, detector, keep_images=annotate is not None, failures=failures)
    for group in _in_batches(detected, batch_size):
        group_results = _classify(group, classifier, tta, batch_size)
        if annotate is not None:
            for item, result in zip(group, group_results):
                _annotate(item, result, annotate, failures)
                item.image = None
        results += group_results
    return results, failures


def to_json(results: Sequence[ImageResult], failures: Sequence[tuple[Source, str]], classifier: Classifier,
            model_path: str, detector: str, tta: str) -> dict[str, Any]:
    return {
        "model": {"path": str(model_path), "name": classifier.name, "kind": classifier.kind},
        "detector": detector,
        "tta": tta,
        "emotions": list(classifier.classes),
        "images": [{"path": str(result.source.path), **image_json(result.width, result.height, result.faces)}
                   for result in results],
        "failed": [{"path": str(source.path), "error": problem} for source, problem in failures],
        "summary": {"images": len(results), "faces": sum(len(result.faces) for result in results),
                    "failed": len(failures)},
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


def _check_options(detector: str, tta: str, batch_size: int) -> Detector:
    """Reject bad options before any file is read; returns the detector that `detector` names."""
    check_choice("--tta mode", tta, TTA_MODES)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise FerError(f"--batch-size must be an integer >= 1, got {batch_size!r}")
    return make_detector(detector)


def _prepare_annotate_folder(annotate: Path) -> None:
    try:
        annotate.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FerError(f"{annotate}: cannot create the --annotate folder ({error.strerror or error})") from None


def _write_json(json_out: str, document: dict[str, Any]) -> None:
    if json_out == "-":
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    write_json(json_out, document)


def run(paths: Sequence[str | os.PathLike], model: str | os.PathLike = SHIPPED_MODELS[0],
        detector: str = "haar", json_out: str | None = None, annotate: str | os.PathLike | None = None,
        tta: str = "none", batch_size: int = 256) -> int:
    """Exit status: 0 when every file was predicted, 1 when any was skipped (the rest still are)."""
    face_detector = _check_options(detector, tta, batch_size)
    annotate = Path(annotate) if annotate is not None else None
    sources = find_images(paths, exclude=annotate)
    if not sources:
        raise FerError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(map(str, paths))}")
    if annotate is not None:
        _check_annotation_targets(sources, annotate)
    classifier = load_classifier(model)
    if annotate is not None:
        _prepare_annotate_folder(annotate)
    results, failures = predict_images(sources, classifier, face_detector, tta, batch_size, annotate)
    if json_out is not None:
        _write_json(json_out, to_json(results, failures, classifier, str(model), detector, tta))
    if json_out != "-":
        print(format_table(results, failures, classifier.classes))
    return 1 if failures else 0


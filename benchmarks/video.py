"""Video speed of `fer predict`: a 640x360 30 fps clip, every frame, detection + tracking +
classification + CSV, after start-up; with and without --annotate, side by side, with the default
detector, and (where the default is yunet) with hog in the same turns, for the ratio.

The clip is made here from the real photos in ../shared/data/photos: the camera pans and zooms over
each photo in turn, so faces move, grow and shrink as in a hand-held video.

    python benchmarks/video.py [--seconds 10] [--rounds 3] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from common import REPO, git_commit, interleaved, machine
from ferkit.api.results import csv_rows
from ferkit.api.video import VideoOptions, analyse_video
from ferkit.choices import PHOTO_MODEL, default_detector
from ferkit.inference.models import load_classifier

PHOTOS = REPO.parent / "shared" / "data" / "photos"
SIZE = (640, 360)
FPS = 30.0


def _window(photo: np.ndarray, progress: float) -> np.ndarray:
    """The camera's view at `progress` (0 to 1) of its move over one photo: from the whole photo
    (as wide as fits at 16:9) zooming in to 80% while panning over the middle half of the room left,
    so that every face stays in view."""
    height, width = photo.shape[:2]
    full_width = min(width, height * SIZE[0] / SIZE[1])
    view_width = full_width * (1 - 0.2 * progress)
    view_height = view_width * SIZE[1] / SIZE[0]
    left = (width - view_width) * (0.25 + 0.5 * progress)
    top = (height - view_height) * 0.1  # faces sit in the upper part of these photos
    matrix = np.array([[view_width / SIZE[0], 0, left], [0, view_height / SIZE[1], top]])
    return cv2.warpAffine(photo, matrix, SIZE, flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def make_clip(photos: list[Path], out: Path, seconds: float, fps: float = FPS) -> int:
    """Write a clip of `seconds` over `photos` (equal time each); returns its frame count."""
    images = [cv2.imread(str(photo)) for photo in photos]
    frames = round(seconds * fps)
    per_photo = max(frames // len(images), 1)
    writer = cv2.VideoWriter(str(out), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*"mp4v"), fps, SIZE)
    for index in range(frames):
        image = images[min(index // per_photo, len(images) - 1)]
        writer.write(_window(image, (index % per_photo) / max(per_photo - 1, 1)))
    writer.release()
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    photos = sorted(PHOTOS.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"benchmarks/video.py: no photos in {PHOTOS} (the real data is not beside this checkout)")
    classifier = load_classifier(PHOTO_MODEL)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        clip = work / "clip.mp4"
        frames = make_clip(photos, clip, args.seconds)
        analyse_video(clip, classifier, VideoOptions(quiet=True))  # warm-up: first-call costs

        def analyse(annotate: bool, detector: str = default_detector()) -> dict[str, float]:
            started = time.perf_counter()
            with csv_rows(work / "faces.csv", classifier.classes) as rows:
                result = analyse_video(clip, classifier, VideoOptions(detector=detector, quiet=True),
                                       partial(rows.add, clip), work / "annotated.mp4" if annotate else None)
            seconds = time.perf_counter() - started
            return {"seconds": seconds, "fps": result.frames / seconds, "tracks": len(result.tracks)}

        variants = {"csv": lambda: analyse(False), "csv+annotate": lambda: analyse(True)}
        if default_detector() != "hog":
            variants["csv, hog"] = lambda: analyse(False, "hog")
        results = interleaved(variants, args.rounds)
    report = {"machine": machine(), "commit": git_commit(), "detector": default_detector(), "model": PHOTO_MODEL,
              "clip": {"frames": frames, "fps": FPS, "size": list(SIZE), "photos": [p.name for p in photos]}}
    for name, runs in results.items():
        fps = statistics.median(run["fps"] for run in runs)
        report[name] = {"median_fps": round(fps, 1), "real_time_ratio": round(fps / FPS, 2),
                        "tracks": runs[0]["tracks"], "runs_fps": [round(run["fps"], 1) for run in runs]}
    plain, annotated = report["csv"]["median_fps"], report["csv+annotate"]["median_fps"]
    report["annotate_cost_ms_per_frame"] = round(1000 / annotated - 1000 / plain, 2)
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

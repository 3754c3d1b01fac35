"""Face detectors side by side: faces found, extra boxes and speed, and how each one frames a face.

    .venv/bin/python benchmarks/detectors.py [--rounds 15] [--out FILE]

Variants: `yunet` as shipped (ferkit.inference.detectors.yunet_detector, where its wheel is installed;
`yunet 0.5` with the score threshold the issue measured in colour), `hog` as shipped
(ferkit.inference.detectors.hog_detector), dlib's HOG on the 640-pixel
photo itself (`hog 1x`) and with one upsampling (`hog 1x + upsample`), `haar` as shipped (half
size, 2 neighbours) and Haar on the whole photo with 5 neighbours (`haar 1x, 5 nb`, the search
`fer predict` used before `fer serve`).

Found and extra boxes:
- photos: ../shared/data/photos, each scaled to 640 pixels on its longer side; a face counts as
  found when a box's centre lies within half the face's side of its centre (FACES, measured by
  hand), and every other box is extra;
- scenes: the 140 FER-2013 sample faces, upscaled to each of SIZES and pasted four to a 640x480
  scene (in turn a plain gradient and a blotchy texture), each face once per size; a face is found
  when a box's centre lies inside its pasted square.
Speed: milliseconds per photo (median) on the two photos and the 640x480 latency scene, the
variants taking turns (common.interleaved); plus the photo latency that `fer serve` pays, one
640x480 JPEG with one face from its bytes to probabilities (ferkit.serving.server.predict_bytes,
the shipped fer2013 model, one torch thread), for yunet, hog and haar.
Search scale: hog's scenes and its speed on the latency scene, searching the 640x480 scene at each
of SWEEP scales (hog_detector(scale, no bounds)): what chose HOG_SCALE in detectors.py.
Framing: each sample face upscaled to a random side in FRAME_SIDES and pasted at a random spot of
a 640x480 scene; for every face that hog and haar find (with their own boxes: margin 0, no
shift), the FER frame side / box side and the box centre's offset from the frame centre, in
frame sides (positive: right, down). Medians and quartiles choose hog's and yunet's framing in
detectors.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from common import REPO, interleaved, machine
from ferkit.api import Analyzer
from ferkit.choices import yunet_module
from ferkit.inference.detectors import Box, Detector, haar_detector, hog_detector, yunet_detector
from ferkit.serving.server import predict_bytes

DATA = REPO.parent / "shared" / "data"
SAMPLE = DATA / "fer2013-images-sample"
PHOTO_SIDE = 640
# Faces in the photos, in their own pixels: centre x, centre y, side (read off the photos by hand).
FACES: dict[str, list[tuple[int, int, int]]] = {
    "portrait.jpg": [(485, 262, 280)],
    "two_people.jpg": [(318, 122, 170), (875, 150, 190)],
}
SIZES = (50, 60, 70, 80, 100, 140, 200)  # pasted face sides, in scene pixels
FRAME_SIDES = (160, 240)
SCENE = (480, 640)  # height, width
LATENCY_FACE = (240, 160, 160)  # x, y, side: benchmarks/predict.py's latency scene
UNBOUNDED = (1, 1 << 20)  # search sides that leave the scale alone
SWEEP = (0.7, 0.8, 0.9, 1.0, 1.15, 1.33)


def variants() -> dict[str, Detector]:
    yunet = {} if yunet_module() is None else {"yunet": yunet_detector(), "yunet 0.5": yunet_detector(threshold=0.5)}
    return yunet | {
        "hog": hog_detector(),
        "hog 1x": hog_detector(1.0, UNBOUNDED),
        "hog 1x + upsample": hog_detector(1.0, UNBOUNDED, upsample=1),
        "haar": haar_detector(),
        "haar 1x, 5 nb": haar_detector(1.0, (1, 1600), 1.1, 5),
    }


def background(seed: int, textured: bool) -> np.ndarray:
    """A 640x480 gradient with fine noise; textured, it also has blotches a few dozen pixels wide."""
    rng = np.random.default_rng(seed)
    height, width = SCENE
    rows, cols = np.mgrid[0:height, 0:width]
    base = 60 + 100 * cols / width + 40 * rows / height + rng.normal(0, 6, SCENE)
    if textured:
        base += cv2.resize(rng.normal(0, 35, (height // 16, width // 16)), (width, height),
                           interpolation=cv2.INTER_CUBIC)
    return np.clip(base, 0, 255).astype(np.uint8)


def paste(scene: np.ndarray, face: np.ndarray, x: int, y: int, side: int) -> None:
    scene[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)


def centre(box: Box) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def match(boxes: list[Box], faces: list[tuple[float, float, float]]) -> tuple[list[bool], int]:
    """Which faces (centre x, centre y, side) some box's centre lies within half a side of, each
    box serving one face; and the number of boxes left over."""
    left = list(boxes)
    found = []
    for fx, fy, side in faces:
        hit = next((box for box in left if max(abs(centre(box)[0] - fx), abs(centre(box)[1] - fy)) < side / 2), None)
        found.append(hit is not None)
        if hit is not None:
            left.remove(hit)
    return found, len(left)


def photos() -> dict[str, tuple[np.ndarray, list[tuple[float, float, float]]]]:
    """Each photo in grayscale at 640 pixels on its longer side, with its faces scaled alike."""
    scaled = {}
    for name, faces in FACES.items():
        gray = cv2.imread(str(DATA / "photos" / name), cv2.IMREAD_GRAYSCALE)
        factor = PHOTO_SIDE / max(gray.shape)
        small = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        scaled[name] = small, [(x * factor, y * factor, side * factor) for x, y, side in faces]
    return scaled


def sample_faces() -> list[np.ndarray]:
    return [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in sorted(SAMPLE.rglob("*.jpg"))]


def scene_counts(detectors: dict[str, Detector], faces: list[np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per variant and face side: faces found (of 140) and extra boxes, four faces per scene."""
    counts = {name: {str(side): {"found": 0, "extra": 0} for side in SIZES} for name in detectors}
    rng = np.random.default_rng(0)
    for side in SIZES:
        for start in range(0, len(faces), 4):
            scene = background(start, textured=bool(start // 4 % 2))
            spots = []
            for face, (cell_x, cell_y) in zip(faces[start:start + 4], ((0, 0), (320, 0), (0, 240), (320, 240))):
                x, y = cell_x + int(rng.integers(0, 321 - side)), cell_y + int(rng.integers(0, 241 - side))
                paste(scene, face, x, y, side)
                spots.append((x + side / 2, y + side / 2, side))
            for name, detect in detectors.items():
                found, extra = match(detect(scene), spots)
                counts[name][str(side)]["found"] += sum(found)
                counts[name][str(side)]["extra"] += extra
    return counts


def quartiles(values: list[float]) -> list[float]:
    return [round(float(value), 3) for value in np.percentile(values, [25, 50, 75])] if values else []


def framing(faces: list[np.ndarray]) -> dict[str, dict[str, Any]]:
    """FER frame side / box side and the box centre's offset from the frame's: for the detectors' own
    boxes (margin 0, no shift), and for the regions that the shipped detectors crop."""
    raw = {"hog box": hog_detector(margin=0.0, shift=0.0), "haar box": haar_detector(margin=0.0),
           "hog crop": hog_detector(), "haar crop": haar_detector()}
    if yunet_module() is not None:
        raw |= {"yunet box": yunet_detector(margin=0.0, shift=0.0), "yunet crop": yunet_detector()}
    ratios: dict[str, list[float]] = {name: [] for name in raw}
    offsets: dict[str, list[tuple[float, float]]] = {name: [] for name in raw}
    rng = np.random.default_rng(1)
    for index, face in enumerate(faces):
        side = int(rng.integers(FRAME_SIDES[0], FRAME_SIDES[1] + 1))
        x, y = int(rng.integers(0, SCENE[1] - side)), int(rng.integers(0, SCENE[0] - side))
        scene = background(1000 + index, textured=bool(index % 2))
        paste(scene, face, x, y, side)
        for name, detect in raw.items():
            boxes = detect(scene)
            found, _ = match(boxes, [(x + side / 2, y + side / 2, side)])
            if found[0]:
                box = min(boxes, key=lambda b: np.hypot(centre(b)[0] - x - side / 2, centre(b)[1] - y - side / 2))
                ratios[name].append(side / box[2])
                offsets[name].append(((centre(box)[0] - x) / side - 0.5, (centre(box)[1] - y) / side - 0.5))
    return {name: {"found": len(ratios[name]), "of": len(faces), "side_ratio": quartiles(ratios[name]),
                   "dx": quartiles([dx for dx, _ in offsets[name]]),
                   "dy": quartiles([dy for _, dy in offsets[name]])} for name in raw}


def latency_scene(faces: list[np.ndarray], detectors: dict[str, Detector]) -> np.ndarray:
    """The 640x480 scene of benchmarks/predict.py with the first sample face that every variant
    finds once (only that face may be found)."""
    x, y, side = LATENCY_FACE
    for index, face in enumerate(faces):
        scene = background(0, textured=False)
        paste(scene, face, x, y, side)
        if all(len(detect(scene)) == 1 for detect in detectors.values()):
            return scene
        if index > 40:
            break
    raise SystemExit("no sample face is found once by every detector; cannot build the latency scene")


def stopwatch(action: Callable[[], object]) -> Callable[[], tuple[float, float]]:
    """Wall and CPU milliseconds of one call. CPU time (all threads) is what a call costs a core;
    on a shared, loaded machine the wall clock also counts the time spent waiting for one."""
    def run() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        return 1000 * (time.perf_counter() - wall), 1000 * (time.process_time() - cpu)
    return run


def summary(times: list[tuple[float, float]]) -> dict[str, float]:
    wall, cpu = [w for w, _ in times], [c for _, c in times]
    return {"median_ms": round(statistics.median(wall), 2), "p90_ms": round(float(np.percentile(wall, 90)), 2),
            "min_ms": round(min(wall), 2), "cpu_median_ms": round(statistics.median(cpu), 2)}


def speeds(detectors: dict[str, Detector], images: dict[str, np.ndarray], rounds: int) -> dict[str, Any]:
    """Median (and fastest) ms per photo of every variant on every image, all taking turns."""
    actions = {f"{name}|{image}": stopwatch(partial(detect, gray))
               for name, detect in detectors.items() for image, gray in images.items()}
    interleaved(actions, 2)
    times = interleaved(actions, rounds)
    report: dict[str, Any] = {name: {} for name in detectors}
    for key, values in times.items():
        name, image = key.split("|")
        report[name][image] = summary(values)
    return report


def latency(scene: np.ndarray, detectors: dict[str, Detector], rounds: int) -> dict[str, Any]:
    """decode + detect + crop + classify of the scene as a JPEG (predict_bytes), one torch thread."""
    torch.set_num_threads(1)
    data = cv2.imencode(".jpg", cv2.cvtColor(scene, cv2.COLOR_GRAY2BGR))[1].tobytes()
    names = [name for name in ("yunet", "hog", "haar") if name in detectors]
    actions = {name: stopwatch(partial(predict_bytes, data, Analyzer("fer2013", detector=name))) for name in names}
    interleaved(actions, 3)
    times = interleaved(actions, rounds * 3)
    return {name: summary(values) for name, values in times.items()}


def sweep(faces: list[np.ndarray], scene: np.ndarray, rounds: int) -> dict[str, Any]:
    """hog searching at each SWEEP scale: faces found per size in the scenes, and ms on the latency scene."""
    detectors = {f"{scale:g}": hog_detector(scale, UNBOUNDED) for scale in SWEEP}
    found = scene_counts(detectors, faces)
    speed = speeds(detectors, {"scene": scene}, rounds)
    return {name: {"scenes": found[name], "speed": speed[name]["scene"]} for name in detectors}


def photo_counts(detectors: dict[str, Detector]) -> dict[str, dict[str, Any]]:
    report: dict[str, dict[str, Any]] = {name: {} for name in detectors}
    for image, (gray, faces) in photos().items():
        for name, detect in detectors.items():
            found, extra = match(detect(gray), faces)
            report[name][image] = {"found": sum(found), "faces": len(faces), "extra": extra}
    return report


def table(report: dict[str, Any]) -> list[str]:
    """One markdown row per variant: photos found/extra, scenes found per size and extra, speed."""
    head = ("| detector | photos: found | photos: extra | " + " | ".join(f"{s} px" for s in SIZES)
            + " | scenes: extra | portrait ms (CPU) | two_people ms (CPU) | scene ms (CPU) |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for name, photo in report["photos"].items():
        scenes, speed = report["scenes"][name], report["speed"][name]
        lines.append(
            f"| {name} | {sum(p['found'] for p in photo.values())}/{sum(p['faces'] for p in photo.values())} | "
            f"{sum(p['extra'] for p in photo.values())} | "
            + " | ".join(str(scenes[str(s)]["found"]) for s in SIZES)
            + f" | {sum(c['extra'] for c in scenes.values())} | "
            + " | ".join(f"{speed[image]['median_ms']:.1f} ({speed[image]['cpu_median_ms']:.1f})"
                         for image in ("portrait.jpg", "two_people.jpg", "scene"))
            + " |")
    return lines


def sweep_table(report: dict[str, Any]) -> list[str]:
    head = "| hog search scale | " + " | ".join(f"{s} px" for s in SIZES) + " | scene ms (CPU ms) |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for name, numbers in report.items():
        speed = numbers["speed"]
        lines.append(f"| {name} | " + " | ".join(str(numbers["scenes"][str(s)]["found"]) for s in SIZES)
                     + f" | {speed['median_ms']:.1f} ({speed['cpu_median_ms']:.1f}) |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed turns per variant and photo")
    parser.add_argument("--out", type=Path, help="write the whole report as JSON here")
    args = parser.parse_args()
    if not SAMPLE.is_dir() or not (DATA / "photos").is_dir():
        raise SystemExit(f"needs {SAMPLE} and {DATA / 'photos'}")
    detectors, faces = variants(), sample_faces()
    scene = latency_scene(faces, detectors)
    images = {name: gray for name, (gray, _) in photos().items()} | {"scene": scene}
    report = {"photos": photo_counts(detectors), "scenes": scene_counts(detectors, faces),
              "framing": framing(faces), "speed": speeds(detectors, images, args.rounds),
              "latency": latency(scene, detectors, args.rounds), "sweep": sweep(faces, scene, args.rounds),
              "machine": machine()}
    print("\n".join(table(report)))
    print("\n".join(sweep_table(report["sweep"])))
    for name, numbers in report["framing"].items():
        print(f"framing, {name}: found {numbers['found']}/{numbers['of']}; quartiles of frame side / box side "
              f"{numbers['side_ratio']}, centre offset x {numbers['dx']}, y {numbers['dy']} (frame sides)")
    for name, numbers in report["latency"].items():
        print(f"photo latency, {name}: median {numbers['median_ms']} ms (CPU {numbers['cpu_median_ms']}), "
              f"p90 {numbers['p90_ms']}, fastest {numbers['min_ms']}")
    print(f"machine: {report['machine']}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

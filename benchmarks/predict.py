"""CPU speed of `fer predict`, with the torch checkpoint and with its ONNX export.

    .venv/bin/python benchmarks/predict.py [--model models/vgg/best.pt] [--runs 30] [--repeats 3]

Latency: one 640x480 photo with one face, decoded, searched with Haar, cropped and classified,
the model already loaded (median of --runs after warm-up); plus one cold `fer predict` process.
Throughput: a folder of 140 faces (the real FER-2013 sample when ../shared/data is there, else
synthetic faces), with --detector none and haar. Speed does not depend on what the weights
learned, so an untrained checkpoint stands in when the model file does not exist.
The torch and ONNX runs of each row take turns (common.interleaved), so both meet the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime
import torch

from common import REPO, machine, seconds_in_turns
from ferkit.api import Analyzer
from ferkit.emotions import FER2013_CLASSES
from ferkit.inference.detectors import make_detector
from ferkit.inference.faces import find_faces
from ferkit.models.checkpoint import save_checkpoint
from ferkit.models.networks import build_model
from ferkit.serving import export, predict

SAMPLE = REPO.parent / "shared" / "data" / "fer2013-images-sample"
SCENE_FACE_SIDE = 160


def describe(about: dict[str, Any]) -> list[str]:
    """common.machine() as two header lines, plus what only this benchmark uses: threads, ORT, OpenCV."""
    load = ", ".join(f"{value:.2f}" for value in about["load_average"])
    return [f"machine: {about['cpu']}; {about['cores']} logical cores, {about['usable_cores']} usable; "
            f"torch threads {torch.get_num_threads()}; load average at the end {load}",
            f"python {about['python']}, torch {about['torch']}, onnxruntime {onnxruntime.__version__}, "
            f"opencv {cv2.__version__}; git {about['commit']}"]


def checkpoint_for(model: Path, folder: Path) -> tuple[Path, str]:
    if model.is_file():
        return model, f"model: {model}"
    torch.manual_seed(0)
    stand_in = folder / "untrained-vgg.pt"
    weights = build_model("vgg", len(FER2013_CLASSES)).state_dict()
    save_checkpoint(stand_in, {"model": "vgg", "dropout": 0.5, "state_dict": weights, "mean": 0.5, "std": 0.25})
    return stand_in, f"model: {model} not found; an untrained vgg stands in (same architecture, same speed)"


def face_images(folder: Path) -> tuple[list[Path], str]:
    """The 140 real sample faces, or 140 synthetic ones written as PNG when the sample is absent."""
    if SAMPLE.is_dir():
        return sorted(SAMPLE.rglob("*.jpg")), f"folder: {SAMPLE} (140 real 48x48 FER-2013 JPEGs)"
    from ferkit.data.synth import generate

    faces, _ = generate(20, seed=0)
    paths = []
    for index, face in enumerate(faces):
        paths.append(folder / "faces" / f"{index:03d}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        cv2.imwrite(str(paths[-1]), face)
    return paths, "folder: 140 synthetic 48x48 faces (the real sample is absent)"


def scene(faces: list[Path], path: Path) -> Path:
    """A 640x480 photo-like JPEG holding the first face that Haar finds once enlarged."""
    rows, cols = np.mgrid[0:480, 0:640]
    rng = np.random.default_rng(0)
    background = np.clip(60 + 100 * cols / 640 + 40 * rows / 480 + rng.normal(0, 6, (480, 640)), 0, 255)
    detector = make_detector("haar")
    for face_path in faces:
        image = background.astype(np.uint8)
        face = cv2.resize(cv2.imread(str(face_path), cv2.IMREAD_GRAYSCALE), (SCENE_FACE_SIDE,) * 2,
                          interpolation=cv2.INTER_CUBIC)
        image[160:160 + SCENE_FACE_SIDE, 240:240 + SCENE_FACE_SIDE] = face
        if len(find_faces(image, detector)) == 1:
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
            return path
    raise SystemExit("no face in the folder is detectable by Haar; cannot build the latency scene")


def run_predict(sources: list[predict.Source], analyzer: Analyzer) -> int:
    """Predict quietly (no progress bar) and return the number of faces classified."""
    with contextlib.redirect_stderr(io.StringIO()):
        results, _ = predict.predict_images(sources, analyzer)
    return sum(len(result.faces) for result in results)


def cold_run(model: Path, image: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ferkit", "predict", str(image), "--model", str(model), "--json", "-"],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "vgg" / "best.pt")
    parser.add_argument("--runs", type=int, default=30, help="timed single-image runs per backend")
    parser.add_argument("--repeats", type=int, default=3, help="timed folder passes per row (median kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint, model_note = checkpoint_for(args.model, folder)
        onnx_path = folder / "model.onnx"
        with contextlib.redirect_stdout(io.StringIO()):
            export.run(checkpoint, onnx_path)
        files, folder_note = face_images(folder)
        scene_path = scene(files, folder / "scene.jpg")
        backends = {"torch": checkpoint, "onnx": onnx_path}
        analyzers = {(name, detector): Analyzer(path, detector) for name, path in backends.items()
                     for detector in ("none", "haar")}
        sources = [predict.Source(path, Path(path.name)) for path in files]
        one = [predict.Source(scene_path, Path(scene_path.name))]

        rows = []
        latency = seconds_in_turns({name: partial(run_predict, one, analyzers[name, "haar"]) for name in backends},
                                   args.runs, warmup=5)
        for name, seconds in latency.items():
            rows.append((f"1 image 640x480 + haar, {name}", f"median {statistics.median(seconds) * 1e3:.1f} ms",
                         f"p90 {np.quantile(seconds, 0.9) * 1e3:.1f} ms"))
        for name, path in backends.items():
            rows.append((f"cold `fer predict` process, {name}", f"{cold_run(path, scene_path):.2f} s",
                         "imports + model load + 1 image"))
        for detector in ("none", "haar"):
            faces = run_predict(sources, analyzers["torch", detector])
            passes = seconds_in_turns({name: partial(run_predict, sources, analyzers[name, detector])
                                       for name in backends}, args.repeats, warmup=1)
            for name, seconds in passes.items():
                median = statistics.median(seconds)
                rows.append((f"folder, --detector {detector}, {name}", f"{len(sources) / median:.0f} images/s",
                             f"{faces} faces, {median:.2f} s per pass"))

    print("\n".join(describe(machine()) + [model_note, folder_note, ""]))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


if __name__ == "__main__":
    main()

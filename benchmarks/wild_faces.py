"""How the crop of a real face changes what the models read from it, on ../shared/data/wild-faces.

    .venv/bin/python benchmarks/wild_faces.py [--models fer2013 ferplus] [--tta flip] [--out FILE]

wild-faces holds 1,556 face photos from the press (mostly LFW's 350x350 crops, the face in the
middle half of the frame, with shoulders and background) labelled by expression: a development set
for choices, never for training or choosing a checkpoint. `fer evaluate --data` scores each file
as one face, the whole frame shrunk to 48x48; `fer predict` on the same photo finds the face first
and cuts it as FER-2013 frames its faces. Variants, each scoring all 1,556 images (an image where the
detector finds no face keeps its whole frame, so every variant is scored on the same images):
- `whole`: the whole frame (what `fer evaluate --data` reads);
- `yunet` / `hog`: the face nearest the frame's centre as the shipped detector crops it;
- `yunet upright`: the same YuNet crop, turned about the face's centre so that the eyes (YuNet's
  landmarks, from the yuface wheel) are level: what `fer predict` does (ferkit.inference.faces.crop_face).
Reported per model and variant: accuracy and macro-F1 over the classes present (scikit-learn), and
how many images had a face found. Also the tilt of the eyes that YuNet measured (quartiles, degrees).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from common import REPO, git_commit, machine
from ferkit.choices import yunet_module
from ferkit.data.reading import class_folder_labels
from ferkit.evaluation.evaluate import per_class_report
from ferkit.imaging import image_files, read_image, to_face48, to_gray
from ferkit.inference.detectors import Box, hog_detector, yunet_detector
from ferkit.inference.faces import crop_face
from ferkit.inference.models import load_classifier

WILD = REPO.parent / "shared" / "data" / "wild-faces"
Crop = Callable[[np.ndarray], np.ndarray | None]  # gray photo -> 48x48 face, or None when none is found


def read_wild(classes: tuple[str, ...]) -> tuple[list[np.ndarray], np.ndarray]:
    """The photos in grayscale at full size, and their labels as indices into `classes`."""
    label_of = class_folder_labels(classes)
    photos, labels = [], []
    for folder in sorted(path for path in WILD.iterdir() if path.is_dir()):
        for path in image_files(folder):
            photos.append(to_gray(read_image(path)))
            labels.append(label_of[folder.name.lower()])
    return photos, np.array(labels)


def nearest_centre(boxes: list[Box], shape: tuple[int, ...]) -> Box | None:
    height, width = shape[:2]
    return min(boxes, key=lambda b: math.hypot(b[0] + b[2] / 2 - width / 2, b[1] + b[3] / 2 - height / 2),
               default=None)


def detector_crop(detect: Callable[[np.ndarray], list[Box]], tilts: list[float] | None = None) -> Crop:
    """The face nearest the centre, cut as `fer predict` cuts it (upright where the box knows its tilt)."""
    def crop(gray: np.ndarray) -> np.ndarray | None:
        box = nearest_centre(detect(gray), gray.shape)
        if box is not None and tilts is not None:
            tilts.append(getattr(box, "angle", 0.0))
        return None if box is None else crop_face(gray, box)
    return crop


def crops_of(photos: list[np.ndarray], crop: Crop | None) -> tuple[np.ndarray, int]:
    """48x48 faces of every photo (the whole frame where `crop` finds none), and how many were found."""
    faces, found = [], 0
    for gray in photos:
        face = None if crop is None else crop(gray)
        found += face is not None
        faces.append(to_face48(gray) if face is None else face)
    return np.stack(faces), found


def scores(labels: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    """Accuracy and macro-F1 over the classes present, as `fer evaluate --data` computes them."""
    report = per_class_report(labels, predicted, classes)
    return {"accuracy": round(report["accuracy"], 4), "macro_f1": round(report["macro_f1"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["fer2013", "ferplus"])
    parser.add_argument("--tta", default="flip")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    args = parser.parse_args()
    if not WILD.is_dir():
        raise SystemExit(f"needs {WILD}")
    angles: list[float] = []
    variants: dict[str, Crop | None] = {"whole": None, "hog": detector_crop(hog_detector())}
    if yunet_module() is not None:
        variants["yunet"] = detector_crop(yunet_detector(upright=False))
    if yunet_module() == "yuface":
        variants["yunet upright"] = detector_crop(yunet_detector(), angles)
    report: dict[str, Any] = {"machine": machine(), "commit": git_commit(), "tta": args.tta, "models": {}}
    for model in args.models:
        classifier = load_classifier(model)
        photos, labels = read_wild(classifier.classes)
        rows = report["models"][model] = {}
        for name, crop in variants.items():
            faces, found = crops_of(photos, crop)
            predicted = classifier.predict_proba(faces, tta=args.tta).argmax(axis=1)
            rows[name] = {**scores(labels, predicted, classifier.classes), "found": found, "images": len(labels)}
            print(f"{model:<10} {name:<14} accuracy {rows[name]['accuracy']:.4f}  macro-F1 "
                  f"{rows[name]['macro_f1']:.4f}  faces found {found}/{len(labels)}", flush=True)
    if angles:
        report["eye_tilt_degrees_quartiles"] = [round(float(q), 1) for q in np.percentile(np.abs(angles), [25, 50, 75])]
        print(f"|eye tilt| quartiles (degrees): {report['eye_tilt_degrees_quartiles']}")
    print(f"machine: {report['machine']}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

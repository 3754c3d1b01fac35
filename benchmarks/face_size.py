"""How small a face can be and still be read: accuracy on PublicTest with every face shrunk first.

    .venv/bin/python benchmarks/face_size.py --data DIR [--models fer2013 ferplus] [--out FILE]

A detector crop of a face N pixels wide is enlarged to the model's 48x48; this imitates it by
shrinking each PublicTest face (DIR is a `fer preprocess` output folder: valid_* is PublicTest) to
N x N (area averaging, as a camera's sensor does) and enlarging it back (bilinear, as
ferkit.imaging.to_face48 does), for each N in SIDES. Reported per model: flip-TTA accuracy per side,
and chance (the share of the largest class). It chose ferkit.inference.detectors.MIN_CLASSIFIED_SIDE:
below it, the expression is mostly gone and a face's label is close to a guess.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from common import git_commit, machine
from ferkit.data.arrays import load_split
from ferkit.emotions import IMAGE_SIZE
from ferkit.inference.models import load_classifier

SIDES = (8, 12, 16, 20, 24, 32, 48)


def shrunk(images: np.ndarray, side: int) -> np.ndarray:
    if side == IMAGE_SIZE:
        return images
    return np.stack([cv2.resize(cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA),
                                (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR) for image in images])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a `fer preprocess` output folder")
    parser.add_argument("--models", nargs="+", default=["fer2013"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    images, labels = load_split(args.data, "valid")
    report = {"machine": machine(), "commit": git_commit(), "chance": round(float(np.bincount(labels).max()
                                                                                   / len(labels)), 4), "models": {}}
    for model in args.models:
        classifier = load_classifier(model)
        report["models"][model] = {}
        for side in SIDES:
            predicted = classifier.predict_proba(shrunk(images, side), tta="flip").argmax(axis=1)
            accuracy = round(float((predicted == labels).mean()), 4)
            report["models"][model][str(side)] = accuracy
            print(f"{model}: faces of {side:>2} px: accuracy {accuracy:.4f} (chance {report['chance']:.4f})",
                  flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Inference of the shipped models in fp32 against bf16 autocast, side by side: speed and accuracy.

    .venv/bin/python benchmarks/inference_precision.py [--models fer2013 ferplus] [--split PublicTest]
                                                       [--tta flip] [--rounds 3] [--json FILE]

Each model scores the split of ../shared/data/fer2013/fer2013.csv.gz that `fer evaluate --data` reads
(FER+ models on the FER+ majority labels), through ferkit.inference.proba.predict_proba at its
temperature, once per precision per round, the two precisions taking turns (common.interleaved).
Reported per model and precision: images/s (fastest round, and each round's), accuracy and macro-F1
(fer evaluate's per-class report); then bf16's speed-up (median of the per-round ratios) and its
accuracy and macro-F1 minus fp32's, in percentage points. bf16 autocast is native only on CPUs with
avx512_bf16 or amx_bf16 (ferkit.runtime.cpu_has_bf16); elsewhere it is emulated, and slow.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import REPO, interleaved, machine
from ferkit.choices import SHIPPED_MODELS
from ferkit.data.labelled import read_labelled
from ferkit.evaluation.evaluate import per_class_report
from ferkit.inference.models import PRETRAINED_DIR, load_classifier
from ferkit.inference.proba import predict_proba
from ferkit.runtime import cpu_has_bf16

DATA = REPO.parent / "shared" / "data"
CSV = DATA / "fer2013" / "fer2013.csv.gz"
VOTES = {"fer2013": None, "ferplus": DATA / "ferplus" / "fer2013new.csv"}
PRECISIONS = ("fp32", "bf16")


def measure(name: str, split: str, tta: str, rounds: int) -> dict[str, Any]:
    """One model's images/s, accuracy and macro-F1 in each precision, the precisions taking turns."""
    classifier = load_classifier(name)
    labels_of = json.loads((PRETRAINED_DIR / f"{name}.json").read_text())["labels"]
    images, labels = read_labelled(CSV, classifier.classes, split, VOTES[labels_of])

    def run(precision: str) -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        probabilities = predict_proba(classifier.model, images, classifier.mean, classifier.std, tta=tta,
                                      batch_size=256, precision=precision, temperature=classifier.temperature)
        return len(images) / (time.perf_counter() - start), probabilities.argmax(axis=1)

    run("fp32")  # warm-up: lazily built kernels
    done = interleaved({precision: (lambda precision=precision: run(precision)) for precision in PRECISIONS}, rounds,
                       lambda turn, precision, result: print(f"  {name} round {turn} {precision}: "
                                                             f"{result[0]:.0f} images/s", flush=True))
    result: dict[str, Any] = {"images": len(labels)}
    for precision, runs in done.items():
        report = per_class_report(labels, runs[-1][1], classifier.classes)
        result[precision] = {"images_per_s": round(max(speed for speed, _ in runs), 1),
                             "images_per_s_each_round": [round(speed, 1) for speed, _ in runs],
                             "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                             "same_predictions_each_round": all(np.array_equal(runs[0][1], r[1]) for _, r in runs)}
    fp32, bf16 = done["fp32"], done["bf16"]
    result["bf16_speedup"] = round(statistics.median(b[0] / f[0] for f, b in zip(fp32, bf16)), 3)
    result["bf16_minus_fp32_points"] = {
        score: round(100 * (result["bf16"][score] - result["fp32"][score]), 3) for score in ("accuracy", "macro_f1")}
    result["predictions_changed"] = int((fp32[-1][1] != bf16[-1][1]).sum())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SHIPPED_MODELS), choices=SHIPPED_MODELS)
    parser.add_argument("--split", default="PublicTest")
    parser.add_argument("--tta", default="flip")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine(), "cpu_has_bf16": cpu_has_bf16(), "split": args.split,
                              "tta": args.tta, "rounds": args.rounds, "models": {}}
    print(json.dumps(report["machine"]), f"native bf16: {report['cpu_has_bf16']}", flush=True)
    for name in args.models:
        report["models"][name] = measure(name, args.split, args.tta, args.rounds)
    print(f"{'model':<8} {'precision':<9} {'images/s':>9} {'accuracy':>9} {'macro-F1':>9}")
    for name, result in report["models"].items():
        for precision in PRECISIONS:
            row = result[precision]
            print(f"{name:<8} {precision:<9} {row['images_per_s']:>9.0f} {row['accuracy']:>9.4f} "
                  f"{row['macro_f1']:>9.4f}")
        points = result["bf16_minus_fp32_points"]
        print(f"{name:<8} bf16/fp32 speed {result['bf16_speedup']:.2f}x; bf16 - fp32: accuracy "
              f"{points['accuracy']:+.2f} points, macro-F1 {points['macro_f1']:+.2f} points; "
              f"{result['predictions_changed']} of {result['images']} predictions changed")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

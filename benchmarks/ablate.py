"""Ablations of the CPU recipe at a short budget, scored on PublicTest only.

Each arm is the shipped recipe (RECIPE, the overrides that trained `fer2013.pt`) with one change,
trained with the project's own `fer train vgg` in its own folder under WORKDIR, for the same
number of epochs and seed unless the arm says otherwise. Each arm's best checkpoint (chosen on
PublicTest by training, as always) is scored on PublicTest plain and with flip TTA; PrivateTest is
never read. One JSON line per finished arm is appended to --out, so a run that is stopped keeps
what it finished, and a stopped arm resumes from its `last.pt`.

    python benchmarks/ablate.py --data DIR [--epochs 12] [--threads 1] [--arms baseline ema ...]

DIR is a `fer preprocess` output folder of the real FER-2013 (or FER+ with --labels-targets).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from common import REPO, machine
from fer.data.arrays import load_split
from fer.inference.proba import predict_proba
from fer.models.checkpoint import load_checkpoint, model_from_checkpoint
from fer.params import merge

# The recipe of the shipped models (docs/MODEL_CARD.md), less the epoch count, which the budget sets.
RECIPE: dict[str, Any] = {
    "train": {"precision": "bf16", "device": "cpu", "schedule": "cosine", "warmup_epochs": 2,
              "label_smoothing": 0.1},
    "vgg": {"lr": 0.05, "width": 0.5},
}

# One change each from RECIPE; `epochs_factor` scales the budget (the "longer" arm).
ARMS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "seed1": {"train": {"seed": 1}},
    "ema": {"train": {"ema_decay": 0.999}},
    "width075": {"vgg": {"width": 0.75}},
    "longer": {"epochs_factor": 2},
    "mixup": {"train": {"mix": "mixup", "mix_alpha": 0.2}},
    "cutmix": {"train": {"mix": "cutmix", "mix_alpha": 1.0}},
    "no_erase": {"train": {"augment": {"erase_prob": 0.0}}},
    "resized_crop": {"train": {"augment": {"crop": "resized"}}},
}


def arm_params(arm: str, epochs: int, threads: int) -> dict[str, Any]:
    change = dict(ARMS[arm])
    factor = change.pop("epochs_factor", 1)
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()), RECIPE)
    params = merge(params, change)
    params = merge(params, {"train": {"threads": threads}, "vgg": {"epochs": epochs * factor}})
    return params


def score_public_test(best: Path, data: Path) -> dict[str, float]:
    checkpoint = load_checkpoint(best)
    model = model_from_checkpoint(checkpoint)
    images, labels = load_split(data, "valid")
    scores = {}
    for tta in ("none", "flip"):
        proba = predict_proba(model, images, checkpoint["mean"], checkpoint["std"], tta=tta)
        scores[f"public_test_{tta}"] = round(float((proba.argmax(1) == labels).mean()), 5)
    return scores


def run_arm(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    folder = args.workdir / arm
    (folder / "data").mkdir(parents=True, exist_ok=True)
    link = folder / "data" / "processed"
    if not link.exists():
        link.symlink_to(args.data.resolve())
    params = arm_params(arm, args.epochs, args.threads)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    started = time.time()
    with open(folder / "train.log", "a") as log:
        subprocess.run([sys.executable, "-m", "fer", "train", "vgg"], cwd=folder, check=True,
                       stdout=log, stderr=subprocess.STDOUT)
    summary = json.loads((folder / "models" / "vgg" / "train_summary.json").read_text())
    return {"arm": arm, "change": ARMS[arm], "epochs": summary["epochs"], "seed": params["train"].get("seed", 0),
            "best_epoch": summary["best_epoch"], **score_public_test(folder / "models" / "vgg" / "best.pt", args.data),
            "seconds_per_epoch": round(summary["wall_seconds"] / max(summary["epochs"], 1), 1),
            "train_images_per_second": summary["train_images_per_second"], "threads": args.threads,
            "wall_minutes": round((time.time() - started) / 60, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a `fer preprocess` output folder")
    parser.add_argument("--workdir", type=Path, default=Path("ablation-runs"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run (leave a core for other work)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--out", type=Path, default=Path("ablation.jsonl"))
    args = parser.parse_args()
    header = {"machine": machine(), "recipe": RECIPE, "epochs": args.epochs}
    with open(args.out, "a") as out:
        out.write(json.dumps(header) + "\n")
    for arm in args.arms:
        result = run_arm(arm, args)
        print(json.dumps(result), flush=True)
        with open(args.out, "a") as out:
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

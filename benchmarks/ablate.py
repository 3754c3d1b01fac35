"""Ablations of the CPU recipe at a short budget, scored on PublicTest and on real faces.

Each arm is the shipped recipe (RECIPE, the overrides that trained `fer2013.pt`) with one change,
trained with the project's own `fer train vgg` in its own folder under WORKDIR, for the same
number of epochs and seed unless the arm says otherwise. With --finetune MODEL, every arm instead
starts from that shipped model's network (member --member of an ensemble) and fine-tunes it
(FINETUNE: a tenth of the learning rate, a short warm-up, a seed no shipped member used). Each
arm's best checkpoint (chosen on PublicTest by training, as always) is scored on PublicTest plain
and with flip TTA, and, where ../shared/data/wild-faces is present, on those real press photos with
flip TTA (accuracy and macro-F1 over the classes present; each photo as one face, as `fer evaluate
--data` reads it, and cropped by the yunet detector as `fer predict` does). wild-faces is for
choices only: it never picks a checkpoint. PrivateTest is never read. One JSON line per finished
arm is appended to --out, so a run that is stopped keeps what it finished, and a stopped arm
resumes from its `last.pt`; --score-only scores the arms' existing checkpoints without training
(new measures for arms trained before).

    python benchmarks/ablate.py --data DIR [--epochs 12] [--threads 1] [--arms baseline ema ...]
        [--finetune fer2013 --member 1] [--score-only]

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
from ferkit.choices import yunet_module
from ferkit.data.arrays import load_split
from ferkit.inference.detectors import yunet_detector
from ferkit.inference.models import model_file
from ferkit.inference.proba import predict_proba
from ferkit.models.checkpoint import Checkpoint, load_checkpoint, member_of, model_from_checkpoint
from ferkit.params import merge
from wild_faces import WILD, crops_of, detector_crop, read_wild, scores

# The recipe of the shipped models (docs/MODEL_CARD.md), less the epoch count, which the budget sets.
RECIPE: dict[str, Any] = {
    "train": {"precision": "bf16", "schedule": "cosine", "warmup_epochs": 2, "label_smoothing": 0.1},
    "vgg": {"lr": 0.05, "width": 0.5},
}
# Fine-tuning a shipped network (--finetune): laid over RECIPE, with train.init and init_member.
FINETUNE: dict[str, Any] = {"train": {"warmup_epochs": 0.3, "seed": 11}, "vgg": {"lr": 0.01}}
# Imitating real photos: the face's scale, light and tilt ("light"), then also focus, size and
# compression ("full"); see ferkit.training.loader.degrade_batch.
PHOTO_LIGHT: dict[str, Any] = {"scale": 0.15, "rotate_degrees": 15, "brightness": 0.15, "contrast": 0.4, "gamma": 0.3}
PHOTO_FULL: dict[str, Any] = {**PHOTO_LIGHT, "blur_prob": 0.2, "low_res_prob": 0.2, "jpeg_prob": 0.2}

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
    "photo_light": {"train": {"augment": PHOTO_LIGHT}},
    "photo_full": {"train": {"augment": PHOTO_FULL}},
}


def arm_params(arm: str, epochs: int, threads: int, finetune: str | None = None, member: int = 0) -> dict[str, Any]:
    change = dict(ARMS[arm])
    factor = change.pop("epochs_factor", 1)
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()), RECIPE)
    if finetune is not None:
        params = merge(params, merge(FINETUNE, {"train": {"init": finetune, "init_member": member}}))
    params = merge(params, change)
    params = merge(params, {"train": {"threads": threads}, "vgg": {"epochs": epochs * factor}})
    return params


def score_public_test(checkpoint: Checkpoint, data: Path) -> dict[str, float]:
    model = model_from_checkpoint(checkpoint)
    images, labels = load_split(data, "valid")
    scores = {}
    for tta in ("none", "flip"):
        proba = predict_proba(model, images, checkpoint["mean"], checkpoint["std"], tta=tta)
        scores[f"public_test_{tta}"] = round(float((proba.argmax(1) == labels).mean()), 5)
    return scores


def score_wild_faces(checkpoint: Checkpoint) -> dict[str, float]:
    """Flip-TTA accuracy and macro-F1 on wild-faces, whole photos and yunet's crops."""
    if not WILD.is_dir():
        return {}
    model = model_from_checkpoint(checkpoint)
    photos, labels = read_wild(checkpoint.header.classes)
    variants = {"whole": None} | ({"yunet": detector_crop(yunet_detector())} if yunet_module() else {})
    result = {}
    for name, crop in variants.items():
        faces, _ = crops_of(photos, crop)
        proba = predict_proba(model, faces, checkpoint["mean"], checkpoint["std"], tta="flip")
        measured = scores(labels, proba.argmax(1), checkpoint.header.classes)
        result |= {f"wild_{name}_{key}": value for key, value in measured.items()}
    return result


def run_arm(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    folder = args.workdir / arm
    (folder / "data").mkdir(parents=True, exist_ok=True)
    link = folder / "data" / "processed"
    if not link.exists():
        link.symlink_to(args.data.resolve())
    params = arm_params(arm, args.epochs, args.threads, args.finetune, args.member)
    started = time.time()
    if not args.score_only:
        (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        with open(folder / "train.log", "a") as log:
            subprocess.run([sys.executable, "-m", "ferkit", "train", "vgg"], cwd=folder, check=True,
                           stdout=log, stderr=subprocess.STDOUT)
    summary = json.loads((folder / "models" / "vgg" / "train_summary.json").read_text())
    best = load_checkpoint(folder / "models" / "vgg" / "best.pt")
    return {"arm": arm, "change": ARMS[arm], "finetune": args.finetune and f"{args.finetune}, member {args.member}",
            "epochs": summary["epochs"], "seed": params["train"].get("seed", 0), "best_epoch": summary["best_epoch"],
            **score_public_test(best, args.data), **score_wild_faces(best),
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
    parser.add_argument("--finetune", metavar="MODEL", help="fine-tune this shipped model or checkpoint in every arm")
    parser.add_argument("--member", type=int, default=0, help="with --finetune: the ensemble member to start from")
    parser.add_argument("--score-only", action="store_true", help="score the arms' checkpoints without training")
    args = parser.parse_args()
    header = {"machine": machine(), "recipe": RECIPE, "epochs": args.epochs,
              **({"finetune": FINETUNE} if args.finetune else {})}
    with open(args.out, "a") as out:
        out.write(json.dumps(header) + "\n")
    if args.finetune:  # the network every arm starts from, as it is
        path = model_file(args.finetune)
        start = member_of(load_checkpoint(path), args.member, str(path))
        result = {"arm": "start", "finetune": f"{args.finetune}, member {args.member}",
                  **score_public_test(start, args.data), **score_wild_faces(start)}
        print(json.dumps(result), flush=True)
        with open(args.out, "a") as out:
            out.write(json.dumps(result) + "\n")
    for arm in args.arms:
        result = run_arm(arm, args)
        print(json.dumps(result), flush=True)
        with open(args.out, "a") as out:
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

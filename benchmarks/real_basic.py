"""A real-data check that fits a CPU: the basic ConvNet on FER-2013 for a short fixed budget.

It runs the project's own stages (`fer preprocess`, `fer train basic`, `fer evaluate --models
basic`) in a scratch folder, on `../shared/data/fer2013/fer2013.csv.gz`, with the default
params.yaml changed only as listed in BUDGET, and prints PrivateTest accuracy, macro-F1, TTA
accuracy and the wall time of each stage.

    python benchmarks/real_basic.py [--workdir DIR] [--csv PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import REPO, machine
from ferkit.params import merge

DEFAULT_CSV = REPO.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"
# The short budget: 15 epochs in bf16 autocast, with the lr decaying within that budget and the
# light augmentation that suits so few epochs. Everything else is params.yaml as committed.
BUDGET = {
    "train": {"precision": "bf16", "device": "cpu"},
    "basic": {"epochs": 15, "lr": 0.02, "gamma": 0.85,
              "augment": {"rotate_degrees": 5, "erase_prob": 0.0}},
    "evaluate": {"device": "cpu"},
}


def write_params(workdir: Path, source: Path) -> None:
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()), BUDGET)
    params["data"]["source"] = str(source)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def timed_stage(workdir: Path, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ferkit", *args], cwd=workdir, check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()
    if not args.csv.exists():
        print(f"real_basic: {args.csv} not found; this benchmark needs the real FER-2013 CSV", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fer-real-basic-"))
    workdir.mkdir(parents=True, exist_ok=True)
    write_params(workdir, args.csv.resolve())
    seconds = {stage: timed_stage(workdir, *command) for stage, command in (
        ("preprocess", ["preprocess"]), ("train_basic", ["train", "basic"]),
        ("evaluate", ["evaluate", "--models", "basic"]))}
    metrics = json.loads((workdir / "metrics" / "basic.json").read_text())
    train = json.loads((workdir / "metrics" / "basic_train.json").read_text())
    about = machine()
    summary = {
        "machine": about, "commit": about["commit"], "budget": BUDGET, "seconds": seconds,
        "best_epoch": train["best_epoch"], "train_images_per_second": train["train_images_per_second"],
        "public_test_accuracy": metrics["valid"]["accuracy"],
        "private_test_accuracy": metrics["test"]["accuracy"],
        "private_test_accuracy_tta": metrics["test"]["accuracy_tta"],
        "private_test_macro_f1": metrics["test"]["macro_f1"],
    }
    print(json.dumps(summary, indent=2))
    print(f"target PrivateTest accuracy >= 0.55: {'PASS' if summary['private_test_accuracy'] >= 0.55 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

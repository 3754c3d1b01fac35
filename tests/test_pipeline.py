"""End to end: `dvc repro` of the whole pipeline in a temporary git repo, on a tiny synthetic set.

The metrics must reproduce `tests/reference/tiny_profile.json`: exactly where the machine matches
the one that recorded it (same torch build, CPU model and kernel ISA), and within
`TOLERANCE` elsewhere, since float kernels differ between CPUs. Regenerate the reference with
`FER_UPDATE_REFERENCE=1 pytest tests/test_pipeline.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import BIN, dvc, git, make_pipeline_repo

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "reference" / "tiny_profile.json"
TOLERANCE = 0.08  # absolute, on accuracies and F1 scores, for machines other than the reference one
# The tiny profile: the default params.yaml with these blocks changed.
TINY_PROFILE = {
    "synth": {"train_per_class": 100, "valid_per_class": 20, "test_per_class": 20},
    # fp32 pinned: under `auto` a CPU with native bf16 would train in bf16 and leave the reference.
    "train": {"threads": 1, "device": "cpu", "batch_size": 32, "precision": "fp32"},
    "basic": {"epochs": 10},
    "vgg": {"epochs": 1},
    "evaluate": {"device": "cpu", "batch_size": 256},
}
SCORES = ("accuracy", "accuracy_tta", "macro_f1", "macro_f1_tta")

pytestmark = pytest.mark.slow


def cpu_model() -> str:
    """The CPU's model name: float kernels differ between CPU models even at the same ISA level."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_fingerprint() -> dict[str, str]:
    return {"torch": torch.__version__, "machine": platform.machine(), "cpu": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory) -> Path:
    return make_pipeline_repo(tmp_path_factory.mktemp("pipeline"), TINY_PROFILE)


def read_scores(repo: Path) -> dict[str, dict[str, float]]:
    scores = {}
    for model in ("basic", "vgg"):
        metrics = json.loads((repo / "metrics" / f"{model}.json").read_text())
        for split in ("valid", "test"):
            scores[f"{model}.{split}"] = {name: metrics[split][name] for name in SCORES}
    return scores


def test_every_output_exists(pipeline_repo: Path) -> None:
    expected = ["data/synthetic/fer2013.csv", "data/processed/train_images.npy", "metrics/data.json",
                "data/processed/data.json", "models/basic/best.pt", "models/vgg/last.pt",
                "models/vgg/train_summary.json", "plots/basic/train_curves.csv", "plots/vgg/confusion.csv",
                "plots/basic/f1.csv", "metrics/basic_train.json", "metrics/vgg.json", "reports/vgg.json",
                "plots/figures/curves.png", "plots/figures/confusion_vgg.png", "plots/figures/f1_per_class.png",
                "dvc.lock"]
    missing = [path for path in expected if not (pipeline_repo / path).exists()]
    assert not missing


def test_metrics_reproduce_the_reference(pipeline_repo: Path) -> None:
    scores = read_scores(pipeline_repo)
    if os.environ.get("FER_UPDATE_REFERENCE"):
        REFERENCE.parent.mkdir(exist_ok=True)
        REFERENCE.write_text(json.dumps({"machine": machine_fingerprint(), "profile": TINY_PROFILE,
                                         "scores": scores}, indent=2) + "\n")
    reference = json.loads(REFERENCE.read_text())
    assert reference["profile"] == TINY_PROFILE, "the profile changed: regenerate the reference"
    if reference["machine"] == machine_fingerprint():
        assert scores == reference["scores"]
    else:
        for key, expected in reference["scores"].items():
            for name, value in expected.items():
                assert abs(scores[key][name] - value) <= TOLERANCE, f"{key}.{name}: {scores[key][name]} vs {value}"


def test_basic_model_beats_chance_clearly(pipeline_repo: Path) -> None:
    test_accuracy = read_scores(pipeline_repo)["basic.test"]["accuracy"]
    assert test_accuracy >= 1 / 7 + 0.2, f"basic test accuracy {test_accuracy} is too close to chance"


def test_dvc_metrics_and_plots_commands_work(pipeline_repo: Path, tmp_path: Path) -> None:
    shown = dvc(pipeline_repo, "metrics", "show")
    assert "metrics/basic.json" in shown and "test.accuracy" in shown
    dvc(pipeline_repo, "plots", "show", "-o", str(tmp_path / "html"))
    html = (tmp_path / "html" / "index.html").read_text()
    assert "Confusion on PrivateTest" in html and "Loss (train vs valid)" in html
    assert "Per-class F1 on PrivateTest" in html


def metric_columns(repo: Path) -> list[str]:
    """`dvc exp show` has one column per leaf of every metrics file."""
    columns = []
    for path in sorted((repo / "metrics").glob("*.json")):
        columns += flatten(json.loads(path.read_text()), f"{path.relative_to(repo)}:")
    return columns


def test_dvc_exp_show_has_at_most_40_metric_columns(pipeline_repo: Path) -> None:
    assert 30 <= len(metric_columns(pipeline_repo)) <= 40, metric_columns(pipeline_repo)


def flatten(tree: dict, prefix: str) -> list[str]:
    keys = []
    for key, value in tree.items():
        keys += flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return keys


def status_after_editing(repo: Path, module: str) -> set[str]:
    """The stages `dvc status` calls changed after appending a comment to one module."""
    path = repo / "src" / "ferkit" / module
    original = path.read_text()
    path.write_text(original + "\n# an edit that changes no behaviour\n")
    try:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        shown = subprocess.run([str(BIN / "dvc"), "status", "--json"], cwd=repo, env=env, capture_output=True,
                               text=True, check=True)
    finally:
        path.write_text(original)
    return {name.split(":")[-1] for name in json.loads(shown.stdout)}


def test_editing_face_detection_reruns_no_pipeline_stage(pipeline_repo: Path) -> None:
    assert status_after_editing(pipeline_repo, "inference/detectors.py") == set()


def test_editing_training_reruns_training_but_not_evaluation(pipeline_repo: Path) -> None:
    assert status_after_editing(pipeline_repo, "training/train.py") == {"train_basic", "train_vgg"}


def test_editing_image_reading_reruns_preprocess(pipeline_repo: Path) -> None:
    assert "preprocess" in status_after_editing(pipeline_repo, "imaging.py")


def experiment_in_a_copy(pipeline_repo: Path, tmp_path: Path, setting: str) -> tuple[Path, set[str], str]:
    """`dvc exp run -S setting` in a committed copy, so that the other tests keep their repo: the
    copy, the stages that ran, and dvc's output."""
    repo = tmp_path / "copy"
    shutil.copytree(pipeline_repo, repo, symlinks=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny profile run")
    output = dvc(repo, "exp", "run", "-S", setting)
    return repo, {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}, output


def test_one_parameter_reruns_only_its_stages(pipeline_repo: Path, tmp_path: Path) -> None:
    """`dvc exp run -S`, as a user would."""
    repo, ran, output = experiment_in_a_copy(pipeline_repo, tmp_path, "++basic.lr=0.02")
    assert ran == {"train_basic", "evaluate"}, output
    assert "basic.lr" in dvc(repo, "params", "diff")
    assert "metrics/basic_train.json" in dvc(repo, "metrics", "diff")


def test_ferplus_labels_rerun_the_pipeline_and_diff_against_fer2013(pipeline_repo: Path, tmp_path: Path) -> None:
    """`dvc exp run -S data.labels=ferplus` on the synthetic data and its votes: every stage after
    synth reruns, eight classes come out, and `dvc metrics diff` compares the two label sets."""
    repo, ran, output = experiment_in_a_copy(pipeline_repo, tmp_path, "data.labels=ferplus")
    assert ran == {"preprocess", "train_basic", "train_vgg", "evaluate"}, output
    assert json.loads((repo / "data/processed/classes.json").read_text())["classes"][-1] == "Contempt"
    assert "Contempt" in json.loads((repo / "metrics/vgg.json").read_text())["test"]["f1"]
    assert len(metric_columns(repo)) <= 40, metric_columns(repo)
    diff = dvc(repo, "metrics", "diff", "--json")
    assert json.loads(diff)["metrics/data.json"]["images"]["diff"] < 0  # the majority rule drops some

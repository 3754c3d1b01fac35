"""preprocess on the real FER-2013 files beside the project; skipped where they are absent."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import SHARED_DATA, requires_shared_data
from ferkit.cli import main
from ferkit.data import preprocess
from ferkit.data.reading import read_folder
from ferkit.emotions import FER2013_CLASSES, SPLITS

pytestmark = requires_shared_data

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
REAL_CSV = SHARED_DATA / "fer2013" / "fer2013.csv.gz"
SAMPLE = SHARED_DATA / "fer2013-images-sample"
# The official class counts per split (Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral).
OFFICIAL_COUNTS = {
    "train": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "valid": [467, 56, 496, 895, 653, 415, 607],
    "test": [491, 55, 528, 879, 594, 416, 626],
}


@pytest.fixture(scope="module")
def real_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """preprocess on the real CSV, once for the tests below: 301 MB of text, a few seconds."""
    out = tmp_path_factory.mktemp("real") / "processed"
    preprocess.run(PARAMS, source=str(REAL_CSV), out=out)
    return out


def test_real_csv_gives_the_official_counts(real_outputs: Path) -> None:
    for split in SPLITS:
        images, labels = np.load(real_outputs / f"{split}_images.npy"), np.load(real_outputs / f"{split}_labels.npy")
        assert images.shape == (sum(OFFICIAL_COUNTS[split]), 48, 48)
        assert np.bincount(labels, minlength=len(FER2013_CLASSES)).tolist() == OFFICIAL_COUNTS[split]
    report = json.loads((real_outputs / "data.json").read_text())
    assert report["images"] == 35_887
    assert report["splits"]["valid"]["Disgust"] == 56


def test_real_csv_duplicates(real_outputs: Path) -> None:
    report = json.loads((real_outputs / "data.json").read_text())
    duplicates: dict[str, Any] = report["duplicates"]
    assert duplicates["distinct_images"] == 34_034
    assert duplicates["within_split"] == {"train": 1236, "valid": 26, "test": 17}
    assert duplicates["across_splits"] == {"train_valid": 270, "train_test": 278, "valid_test": 43}
    assert duplicates["across_splits_conflicting_labels"] == {"train_valid": 13, "train_test": 14, "valid_test": 2}
    assert sum(report["constant_images"].values()) == 12
    with (real_outputs / "duplicates.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    # every copy of a repeated image is listed: the extra copies, plus one first copy per image
    extra_copies = report["images"] - duplicates["distinct_images"]
    assert len(rows) == extra_copies + duplicates["repeated_images"]
    assert len({row["group"] for row in rows}) == duplicates["repeated_images"]
    assert report["duplicates_csv"] == str(real_outputs / "duplicates.csv")


def folder_labels(split_prefix: str) -> list[int]:
    """Labels from the class folders, in the reader's order: class folder, then file name."""
    part = "train" if split_prefix == "Training" else "test"
    index = {name.lower(): label for label, name in enumerate(FER2013_CLASSES)}
    return [index[folder.name] for folder in sorted((SAMPLE / part).iterdir())
            for _ in sorted(folder.glob(f"{split_prefix}_*"))]


def test_real_image_sample() -> None:
    data = read_folder(SAMPLE, valid_fraction=0.1, seed=0)
    assert [len(data.labels[split]) for split in SPLITS] == [84, 28, 28]
    assert data.labels["train"].tolist() == folder_labels("Training")
    assert data.labels["valid"].tolist() == folder_labels("PublicTest")
    assert data.labels["test"].tolist() == folder_labels("PrivateTest")
    assert data.valid_from == "PublicTest" and data.converted == 0


def test_cli_on_the_real_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["preprocess", "--params", str(PARAMS), "--source", str(SAMPLE), "--out", str(out)]) == 0
    report = json.loads((out / "data.json").read_text())
    assert [report["splits"][split]["total"] for split in SPLITS] == [84, 28, 28]
    assert "train 84, valid 28, test 28 images" in capsys.readouterr().out

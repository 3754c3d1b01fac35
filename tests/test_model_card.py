"""The shipped models: they load from the package, fit the size budget, work with no --model, and
still score what their model card says on the real FER-2013 (so a change to preprocessing,
normalisation or inference that silently alters predictions fails here)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, gray_image, requires_shared_data
from ferkit.choices import PHOTO_MODEL, SHIPPED_MODELS
from ferkit.cli import main
from ferkit.data.labelled import read_labelled_splits
from ferkit.emotions import LABEL_SETS
from ferkit.evaluation.transfer import score_arrays
from ferkit.inference.models import PRETRAINED_DIR, load_classifier

REPO = Path(__file__).resolve().parents[1]
FER2013_CSV = SHARED_DATA / "fer2013" / "fer2013.csv.gz"
WILD_FACES = SHARED_DATA / "wild-faces"  # class folders, scored whole (the "wild-faces" scores)
# The votes file that each label set's scores need (FER+ models are scored on the majority labels).
VOTES = {"fer2013": None, "ferplus": SHARED_DATA / "ferplus" / "fer2013new.csv"}
TOLERANCE = 0.002  # 0.2 percentage points
SIZE_BUDGET = 25 * 2**20  # bytes, all shipped weights together


def card_numbers(name: str) -> dict:
    return json.loads((PRETRAINED_DIR / f"{name}.json").read_text())


def test_shipped_weights_fit_the_budget_and_are_the_only_model_files() -> None:
    weights = sorted(PRETRAINED_DIR.glob("*.pt"))
    assert [path.stem for path in weights] == sorted(SHIPPED_MODELS)
    assert sum(path.stat().st_size for path in weights) <= SIZE_BUDGET


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_a_shipped_model_loads_by_name_with_its_temperature_and_classes(name: str) -> None:
    classifier = load_classifier(name)  # torch.load(weights_only=True) inside
    assert classifier.temperature == pytest.approx(card_numbers(name)["temperature"])
    assert classifier.classes == LABEL_SETS[card_numbers(name)["labels"]]


def test_predict_works_with_no_model_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    cv2.imwrite(str(tmp_path / "face.png"), gray_image(120))
    assert main(["predict", str(tmp_path / "face.png"), "--detector", "none", "--json", "-"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"]["path"] == PHOTO_MODEL and len(result["images"][0]["faces"]) == 1


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_the_card_quotes_the_recorded_numbers(name: str) -> None:
    card = REPO / card_numbers(name)["card"]
    for split, scores in card_numbers(name)["scores"].items():
        quoted = f"{scores['accuracy']:.2%}"
        assert quoted in card.read_text(), f"{split} accuracy {quoted} not in {card}"


def source_of(key: str) -> tuple[Path, str | None]:
    """Where a recorded score was measured: the wild-faces folder whole, or a split of the FER-2013 CSV."""
    return (WILD_FACES, None) if key == WILD_FACES.name else (FER2013_CSV, key)


# Every recorded score of every shipped model: (model, key under "scores").
RECORDED = [(name, key) for name in SHIPPED_MODELS for key in card_numbers(name)["scores"]]

Faces = tuple[np.ndarray, np.ndarray]


@pytest.fixture(scope="session")
def recorded_faces() -> Iterator[Callable[[Path, str], dict[str | None, Faces]]]:
    """The faces and labels (label set `labels`) of every split of a source that a recorded score needs,
    each source read once per session for all its splits."""
    @functools.cache
    def read(path: Path, labels: str) -> dict[str | None, Faces]:
        splits = sorted({split for _, key in RECORDED for source, split in [source_of(key)] if source == path},
                        key=str)
        votes = VOTES[labels] if path == FER2013_CSV else None  # a folder's labels are its folder names
        return dict(zip(splits, read_labelled_splits(path, LABEL_SETS[labels], splits, votes)))
    yield read
    read.cache_clear()


@requires_shared_data
@pytest.mark.slow
@pytest.mark.parametrize(("name", "key"), RECORDED)
def test_the_shipped_model_still_scores_what_its_card_says(
        name: str, key: str, recorded_faces: Callable[[Path, str], dict[str | None, Faces]]) -> None:
    recorded = card_numbers(name)
    path, split = source_of(key)
    if not path.exists():
        pytest.skip(f"{path} is absent: the {key} score cannot be measured here")
    images, labels = recorded_faces(path, recorded["labels"])[split]
    # score() on faces read once: the code path of `fer evaluate --data PATH [--split SPLIT] --tta TTA`
    measured = score_arrays([name], images, labels, str(path), split, recorded["tta"])
    expected = recorded["scores"][key]
    assert abs(measured["accuracy"] - expected["accuracy"]) <= TOLERANCE, (measured["accuracy"], expected)
    assert abs(measured["macro_f1"] - expected["macro_f1"]) <= TOLERANCE, (measured["macro_f1"], expected)

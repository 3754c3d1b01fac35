"""The synthetic dataset: deterministic, balanced, learnable, and written in the Kaggle CSV layout."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier

from ferkit.cli import main
from ferkit.data import synth
from ferkit.emotions import FER2013_CLASSES, IMAGE_SIZE, PIXELS_PER_IMAGE
from ferkit.errors import FerError

NUM_CLASSES = len(FER2013_CLASSES)
CHANCE = 1 / NUM_CLASSES


def write_params(folder: Path, **overrides) -> Path:
    block = {"train_per_class": 3, "valid_per_class": 2, "test_per_class": 1, "seed": 5, **overrides}
    path = folder / "params.yaml"
    path.write_text("synth:\n" + "".join(f"  {key}: {value}\n" for key, value in block.items()))
    return path


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as handle:
        header, *rows = csv.reader(handle)
    return header, rows


@pytest.fixture(scope="module")
def learnability_sets() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    return synth.generate(100, seed=1), synth.generate(30, seed=2)


# --- generate ---------------------------------------------------------------------------------

def test_same_seed_gives_identical_bytes() -> None:
    first_images, first_labels = synth.generate(4, seed=11)
    second_images, second_labels = synth.generate(4, seed=11)
    assert first_images.tobytes() == second_images.tobytes()
    assert np.array_equal(first_labels, second_labels)


def test_different_seeds_give_different_images() -> None:
    first, _ = synth.generate(4, seed=11)
    second, _ = synth.generate(4, seed=12)
    assert not np.array_equal(first, second)


def test_shapes_dtypes_and_balanced_shuffled_labels() -> None:
    images, labels = synth.generate(5, seed=0)
    assert images.shape == (5 * NUM_CLASSES, IMAGE_SIZE, IMAGE_SIZE) and images.dtype == np.uint8
    assert labels.shape == (5 * NUM_CLASSES,) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < NUM_CLASSES
    assert np.bincount(labels, minlength=NUM_CLASSES).tolist() == [5] * NUM_CLASSES
    assert not np.array_equal(labels, np.sort(labels))


def test_images_use_a_wide_range_of_intensities() -> None:
    images, _ = synth.generate(3, seed=0)
    assert images.min() < 40 and images.max() > 215
    assert all(image.std() > 10 for image in images)  # no blank frames


@pytest.mark.parametrize("n_per_class, seed", [(0, 1), (-3, 1), (2.5, 1), (True, 1), (2, -1), (2, "7")])
def test_bad_arguments_raise_fer_error(n_per_class, seed) -> None:
    with pytest.raises(FerError):
        synth.generate(n_per_class, seed)


def test_splits_have_independent_seeds_and_share_no_image() -> None:
    seeds = [synth.split_seed(2013, index) for index in range(3)]
    assert len(set(seeds)) == 3
    fingerprints = [{image.tobytes() for image in synth.generate(10, seed)[0]} for seed in seeds]
    assert not (fingerprints[0] & fingerprints[1] or fingerprints[0] & fingerprints[2]
                or fingerprints[1] & fingerprints[2])


# --- learnability -----------------------------------------------------------------------------

def flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255


def test_a_linear_model_on_pixels_beats_chance_on_held_out_faces(learnability_sets) -> None:
    (train_images, train_labels), (test_images, test_labels) = learnability_sets
    model = RidgeClassifier(alpha=100.0).fit(flat(train_images), train_labels)
    # Measured about 0.33; a CNN does far better, but this keeps the test fast.
    assert model.score(flat(test_images), test_labels) > CHANCE + 0.1


def test_mean_brightness_alone_does_not_reveal_the_class(learnability_sets) -> None:
    (train_images, train_labels), (test_images, test_labels) = learnability_sets
    brightness = flat(train_images).mean(axis=1)
    centroids = np.array([brightness[train_labels == label].mean() for label in range(NUM_CLASSES)])
    test_brightness = flat(test_images).mean(axis=1)
    guesses = np.abs(test_brightness[:, None] - centroids[None, :]).argmin(axis=1)
    assert (guesses == test_labels).mean() < CHANCE + 0.1


# --- run and the CSV --------------------------------------------------------------------------

def test_run_writes_the_kaggle_layout(tmp_path: Path) -> None:
    out = tmp_path / "data" / "fer2013.csv"
    synth.run(write_params(tmp_path), out=out, grid=None)
    header, rows = read_rows(out)
    assert header == ["emotion", "pixels", "Usage"]
    assert out.read_text().startswith("emotion,pixels,Usage\n")
    usages = [usage for _, _, usage in rows]
    assert {usage: usages.count(usage) for usage in set(usages)} == {
        "Training": 3 * NUM_CLASSES, "PublicTest": 2 * NUM_CLASSES, "PrivateTest": 1 * NUM_CLASSES}
    for emotion, pixels, _ in rows:
        values = [int(text) for text in pixels.split(" ")]
        assert len(values) == PIXELS_PER_IMAGE and min(values) >= 0 and max(values) <= 255
        assert 0 <= int(emotion) < NUM_CLASSES


def test_csv_rows_hold_exactly_what_generate_returns(tmp_path: Path) -> None:
    out = tmp_path / "fer2013.csv"
    synth.run(write_params(tmp_path, seed=9), out=out, grid=None)
    _, rows = read_rows(out)
    images, labels = synth.generate(3, synth.split_seed(9, 0))
    training = [row for row in rows if row[2] == "Training"]
    assert [int(emotion) for emotion, _, _ in training] == labels.tolist()
    decoded = np.array([[int(text) for text in pixels.split()] for _, pixels, _ in training], dtype=np.uint8)
    assert np.array_equal(decoded.reshape(images.shape), images)


def test_run_is_reproducible_byte_for_byte(tmp_path: Path) -> None:
    params = write_params(tmp_path)
    synth.run(params, out=tmp_path / "a.csv", grid=None)
    synth.run(params, out=tmp_path / "b.csv", grid=None)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_run_saves_a_png_grid(tmp_path: Path) -> None:
    grid = tmp_path / "docs" / "samples.png"
    synth.run(write_params(tmp_path), out=tmp_path / "fer2013.csv", grid=grid)
    assert grid.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_grid_must_be_named_png(tmp_path: Path) -> None:
    out = tmp_path / "fer2013.csv"
    with pytest.raises(FerError, match=r"\.png"):
        synth.run(write_params(tmp_path), out=out, grid=tmp_path / "samples.jpg")
    assert not out.exists()


# --- the command line -------------------------------------------------------------------------

def test_cli_synth_succeeds(tmp_path: Path) -> None:
    out = tmp_path / "fer2013.csv"
    assert main(["synth", "--params", str(write_params(tmp_path)), "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 1 + 6 * NUM_CLASSES


@pytest.mark.parametrize("overrides, key", [
    ({"train_per_class": -1}, "train_per_class"),
    ({"test_per_class": "many"}, "test_per_class"),
    ({"seed": 1.5}, "seed"),
])
def test_cli_bad_params_exit_2_with_one_line_and_no_output(tmp_path: Path, capsys, overrides, key) -> None:
    out = tmp_path / "out" / "fer2013.csv"
    params = write_params(tmp_path, **overrides)
    assert main(["synth", "--params", str(params), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("fer: error:") and key in error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_cli_unwritable_output_exits_2_and_leaves_no_temp_file(tmp_path: Path, capsys) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()  # a folder where the CSV should go
    assert main(["synth", "--params", str(write_params(tmp_path)), "--out", str(taken)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("fer: error:") and error.count("\n") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml", "taken"]

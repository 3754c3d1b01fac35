"""The preprocess stage: outputs, the data report, atomic writes, the CLI and the DVC stage."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import (
    LABELS,
    USAGES,
    csv_lines,
    good_csv,
    gray_image,
    make_folder,
    pixel_text,
    prefixed_folder,
    sample_images,
    write_csv,
)
from ferkit.cli import main
from ferkit.data import preprocess, synth
from ferkit.data.reading import Dataset, read_csv
from ferkit.emotions import FER2013_CLASSES, SPLITS
from ferkit.errors import FerError

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = sorted(preprocess.OUTPUT_FILES)


def write_params(folder: Path, source: Path | str = "data/synthetic/fer2013.csv", **data) -> Path:
    path = folder / "params.yaml"
    block = {"source": str(source), "valid_fraction": 0.1, "seed": 0, **data}
    path.write_text(yaml.safe_dump({"data": block}))
    return path


def entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# --- outputs ---------------------------------------------------------------------------------------

def test_writes_arrays_and_report_into_out(tmp_path: Path) -> None:
    source = good_csv(tmp_path)
    out = tmp_path / "processed"
    preprocess.run(write_params(tmp_path, source), source=None, out=out)
    assert entries(out) == sorted([*OUTPUTS, "data.json"])
    images = sample_images()
    for split, usage in zip(SPLITS, ("Training", "PublicTest", "PrivateTest")):
        rows = [row for row, row_usage in enumerate(USAGES) if row_usage == usage]
        split_images = np.load(out / f"{split}_images.npy")
        split_labels = np.load(out / f"{split}_labels.npy")
        assert split_images.dtype == np.uint8 and split_images.shape == (len(rows), 48, 48)
        assert split_labels.dtype == np.int64 and split_labels.tolist() == [LABELS[row] for row in rows]
        assert np.array_equal(split_images, images[rows])
    report = json.loads((out / "data.json").read_text())
    assert report["source"] == str(source)
    assert not [name for name in entries(tmp_path) if name.startswith(".")]  # no temporary folders left


def test_default_paths_and_source_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, "missing.csv")
    other = good_csv(tmp_path, "other.csv.gz")
    preprocess.run(params, source=str(other), out=None)
    assert entries(tmp_path / "data" / "processed") == sorted([*OUTPUTS, "data.json"])
    report = json.loads((tmp_path / "data" / "processed" / "data.json").read_text())
    assert report["source"] == str(other) and report["images"] == len(USAGES)
    # The DVC metric holds the report's totals only, so `dvc exp show` stays readable.
    totals = json.loads((tmp_path / "metrics" / "data.json").read_text())
    assert totals == {"images": len(USAGES), "repeats_within_splits": 0, "shared_across_splits": 0,
                      "constant_images": 0}


def test_source_comes_from_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    good_csv(tmp_path, "fer2013.csv")
    preprocess.run(write_params(tmp_path, "fer2013.csv"), source=None, out=None)
    assert json.loads(Path("data/processed/data.json").read_text())["source"] == "fer2013.csv"


# --- the data report -------------------------------------------------------------------------------

def dataset(images: dict[str, np.ndarray], labels: dict[str, list[int]]) -> Dataset:
    return Dataset.from_splits(images, {split: np.array(values, np.int64) for split, values in labels.items()})


def test_report_counts_duplicates_and_constant_images() -> None:
    a, b, c, d, e = sample_images(5, seed=4)
    blank = np.zeros((48, 48), np.uint8)
    data = dataset(
        images={"train": np.stack([a, a, a, b, blank, c]), "valid": np.stack([a, d, c]),
                "test": np.stack([e, e, d, np.full((48, 48), 128, np.uint8)])},
        labels={"train": [0, 0, 1, 2, 3, 4], "valid": [0, 5, 4], "test": [6, 6, 1, 2]},
    )
    report = preprocess.data_report(data, "somewhere.csv")
    assert report["source"] == "somewhere.csv" and report["images"] == 13
    assert report["splits"]["train"] == {"total": 6, "Angry": 2, "Disgust": 1, "Fear": 1, "Happy": 1,
                                         "Sad": 1, "Surprise": 0, "Neutral": 0}
    assert report["constant_images"] == {"train": 1, "valid": 0, "test": 1}
    assert report["converted_images"] == 0
    assert report["duplicates"] == {
        "distinct_images": 7,
        "repeated_images": 4,  # a, c, d, e
        "within_split": {"train": 2, "valid": 0, "test": 1},  # a twice more in train, e once more in test
        "within_split_conflicting_labels": {"train": 1, "valid": 0, "test": 0},  # a: Angry and Disgust
        "across_splits": {"train_valid": 2, "train_test": 0, "valid_test": 1},  # a and c; d
        "across_splits_conflicting_labels": {"train_valid": 1, "train_test": 0, "valid_test": 1},  # a; d
    }
    assert report["duplicates_csv"] is None  # where run() writes the list; no file here
    json.dumps(report)  # plain JSON types only


def read_duplicates(folder: Path) -> list[list[str]]:
    with (folder / "duplicates.csv").open(newline="") as file:
        return list(csv.reader(file))


def test_duplicates_are_listed_with_their_csv_lines(tmp_path: Path) -> None:
    a, b, c, d, e, f = sample_images(6, seed=5)
    rows = [  # (label, image, Usage) from line 3 on: line 2 is blank, and still counts
        (3, a, "Training"), (3, a, "PublicTest"), (4, b, "Training"), (0, a, "Training"),
        (2, c, "PrivateTest"), (2, c, "PrivateTest"), (6, d, "PublicTest"), (6, d, "PrivateTest"),
        (5, e, "Training"), (1, f, "PublicTest"),
    ]
    lines = ["emotion,pixels,Usage", "", *(f"{label},{pixel_text(image)},{usage}" for label, image, usage in rows)]
    out = tmp_path / "out"
    preprocess.run(write_params(tmp_path, write_csv(tmp_path / "dup.csv", lines)), source=None, out=out)
    # train is a b a e, valid a d f, test c c d; groups are numbered where they first appear
    assert read_duplicates(out) == [
        ["group", "split", "row", "source", "label", "conflicting"],
        ["1", "train", "0", "3", "Happy", "True"],  # a: Happy twice, Angry once
        ["1", "train", "2", "6", "Angry", "True"],
        ["1", "valid", "0", "4", "Happy", "True"],
        ["2", "valid", "1", "9", "Neutral", "False"],  # d, in valid and test
        ["2", "test", "2", "10", "Neutral", "False"],
        ["3", "test", "0", "7", "Fear", "False"],  # c, twice in test
        ["3", "test", "1", "8", "Fear", "False"],
    ]
    report = json.loads((out / "data.json").read_text())
    assert report["duplicates_csv"] == str(out / "duplicates.csv")
    assert report["duplicates"] == {
        "distinct_images": 6, "repeated_images": 3,
        "within_split": {"train": 1, "valid": 0, "test": 1},
        "within_split_conflicting_labels": {"train": 1, "valid": 0, "test": 0},
        "across_splits": {"train_valid": 1, "train_test": 0, "valid_test": 1},
        "across_splits_conflicting_labels": {"train_valid": 1, "train_test": 0, "valid_test": 0},
    }


def test_duplicates_of_a_folder_are_listed_by_file(tmp_path: Path) -> None:
    root = prefixed_folder(tmp_path / "faces")  # train/angry/Training_01.png is gray_image(0)
    make_folder(root, {"train/sad/Training_98.png": gray_image(0)})
    preprocess.run(write_params(tmp_path, root), source=None, out=tmp_path / "out")
    train = root / "train"
    # train rows go by class folder, then name: angry 0-1, ..., sad 10-12
    assert read_duplicates(tmp_path / "out")[1:] == [
        ["1", "train", "1", str(train / "angry" / "Training_01.png"), "Angry", "True"],
        ["1", "train", "12", str(train / "sad" / "Training_98.png"), "Sad", "True"],
    ]


def test_no_duplicates_gives_just_the_header(tmp_path: Path) -> None:
    preprocess.run(write_params(tmp_path, good_csv(tmp_path)), source=None, out=tmp_path / "out")
    assert read_duplicates(tmp_path / "out") == [list(preprocess.DUPLICATES_COLUMNS)]


def test_report_of_a_folder_counts_conversions(tmp_path: Path) -> None:
    root = prefixed_folder(tmp_path / "faces")
    color = np.dstack([sample_images(1)[0]] * 3)
    assert cv2.imwrite(str(root / "train" / "happy" / "Training_50.png"), color)
    preprocess.run(write_params(tmp_path, root), source=None, out=tmp_path / "out")
    report = json.loads((tmp_path / "out" / "data.json").read_text())
    assert report["converted_images"] == 1 and report["valid_from"] == "PublicTest"
    assert report["splits"]["train"]["Happy"] == 3 and report["splits"]["valid"]["total"] == len(FER2013_CLASSES)


def test_content_ids_survive_a_fingerprint_collision(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = sample_images(6, seed=2).reshape(6, -1)
    rows[3] = rows[1]
    expected = preprocess.content_ids(rows)
    monkeypatch.setattr(preprocess, "_MIXERS", np.zeros(288, np.uint64))  # every row collides
    collided = preprocess.content_ids(rows)
    assert len(set(expected.tolist())) == 5 and expected[1] == expected[3]
    assert np.array_equal(collided[:, None] == collided, expected[:, None] == expected)  # same grouping


# --- nothing partial, nothing lost ---------------------------------------------------------------

def bad_csv(folder: Path) -> Path:
    lines = csv_lines(sample_images())
    lines[-1] = lines[-1].replace("PublicTest", "Elsewhere")
    return write_csv(folder / "bad.csv", lines)


def test_bad_input_keeps_earlier_outputs(tmp_path: Path) -> None:
    out = tmp_path / "processed"
    params = write_params(tmp_path, good_csv(tmp_path))
    preprocess.run(params, source=None, out=out)
    before = {name: (out / name).read_bytes() for name in entries(out)}
    with pytest.raises(FerError, match=r"bad\.csv: line 8: Usage 'Elsewhere'"):
        preprocess.run(params, source=str(bad_csv(tmp_path)), out=out)
    assert {name: (out / name).read_bytes() for name in entries(out)} == before
    assert not [name for name in entries(tmp_path) if name.startswith(".")]


def test_bad_input_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FerError, match="line 8"):
        preprocess.run(write_params(tmp_path, bad_csv(tmp_path)), source=None, out=None)
    assert entries(tmp_path) == ["bad.csv", "params.yaml"]


def test_failure_before_the_renames_keeps_arrays_and_report_together(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A report that cannot be serialised fails the run before either output is replaced."""
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, good_csv(tmp_path))
    preprocess.run(params, source=None, out=None)
    outputs = [*(Path("data/processed") / name for name in OUTPUTS), Path("metrics/data.json")]
    before = {path: path.read_bytes() for path in outputs}
    real_report = preprocess.data_report
    monkeypatch.setattr(preprocess, "data_report", lambda *args, **kwargs: {**real_report(*args, **kwargs),
                                                                           "oops": object()})
    with pytest.raises(TypeError, match="not JSON serializable"):
        preprocess.run(params, source=str(good_csv(tmp_path, "other.csv", sample_images(seed=1))), out=None)
    assert {path: path.read_bytes() for path in outputs} == before
    assert entries(Path("data")) == ["processed"] and entries(Path("metrics")) == ["data.json"]  # no temporaries


def test_default_report_and_arrays_are_replaced_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, good_csv(tmp_path))
    preprocess.run(params, source=None, out=None)
    preprocess.run(params, source=str(good_csv(tmp_path, "other.csv", sample_images(seed=1))), out=None)
    assert json.loads(Path("data/processed/data.json").read_text())["source"] == str(tmp_path / "other.csv")
    assert np.array_equal(np.load("data/processed/train_images.npy"), sample_images(seed=1)[[0, 2, 4]])
    assert entries(Path("data")) == ["processed"] and entries(Path("metrics")) == ["data.json"]


def test_refuses_to_replace_a_folder_of_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FerError, match="holds files that preprocess did not write"):
        preprocess.run(write_params(tmp_path, good_csv(tmp_path)), source=None, out=tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_bad_params(tmp_path: Path) -> None:
    with pytest.raises(FerError, match="data.valid_fraction must be a number"):
        preprocess.run(write_params(tmp_path, "x.csv", valid_fraction=2), source=None, out=tmp_path / "o")


def test_unwritable_output_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(FerError, match="cannot write"):
        preprocess.run(write_params(tmp_path, good_csv(tmp_path)), source=None, out=blocker / "out")


# --- the command line ----------------------------------------------------------------------------

def test_cli_success(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = write_params(tmp_path)
    out = tmp_path / "out"
    source = good_csv(tmp_path)
    assert main(["preprocess", "--params", str(params), "--source", str(source), "--out", str(out)]) == 0
    assert entries(out) == sorted([*OUTPUTS, "data.json"])
    assert "train 3, valid 2, test 2 images" in capsys.readouterr().out


@pytest.mark.parametrize("make_source", [bad_csv, lambda folder: folder / "absent.csv.gz"])
def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], make_source) -> None:
    source = make_source(tmp_path)
    code = main(["preprocess", "--params", str(write_params(tmp_path)), "--source", str(source),
                 "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith(f"fer: error: {source}: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("content", "reason"), [
    (b"not an image at all", "not an image (not JPEG, PNG, BMP, WebP or TIFF)"),
    (b"\xff\xd8\xff\xe0 a JPEG that stops here", "truncated JPEG (no image data)")])
def test_cli_undecodable_image_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                           content: bytes, reason: str) -> None:
    root = prefixed_folder(tmp_path / "faces")
    (root / "train" / "sad" / "Training_9.jpg").write_bytes(content)  # a truncated JPEG or none
    code = main(["preprocess", "--params", str(write_params(tmp_path)), "--source", str(root),
                 "--out", str(tmp_path / "out")])
    captured = capfd.readouterr()  # file descriptors too: OpenCV's own warnings would show here
    assert code == 2
    image = root / "train" / "sad" / "Training_9.jpg"
    assert captured.err == f"fer: error: {image}: {reason}\n"


# --- the synthetic set, through the parser and through DVC ---------------------------------------

SYNTH = {"train_per_class": 3, "valid_per_class": 2, "test_per_class": 1, "seed": 9}


def test_synthetic_csv_round_trip(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"synth": SYNTH}))
    csv_path = tmp_path / "fer2013.csv"
    synth.run(params_path=params, out=csv_path)
    data = read_csv(csv_path)
    for index, (split, key) in enumerate(zip(SPLITS, ("train_per_class", "valid_per_class", "test_per_class"))):
        images, labels = synth.generate(SYNTH[key], synth.split_seed(SYNTH["seed"], index))
        assert np.array_equal(data.images[split], images)
        assert np.array_equal(data.labels[split], labels)


def run_tool(repo: Path, *command: str) -> None:
    tools = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.slow
def test_dvc_repro_preprocess(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["synth"].update(SYNTH)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc = str(Path(sys.executable).parent / "dvc")
    run_tool(repo, "git", "init", "-q")
    run_tool(repo, dvc, "init", "-q")
    run_tool(repo, dvc, "config", "core.analytics", "false")
    run_tool(repo, dvc, "repro", "preprocess")
    assert entries(repo / "data" / "processed") == sorted([*OUTPUTS, "data.json"])
    report = json.loads((repo / "data" / "processed" / "data.json").read_text())
    assert report["source"] == "data/synthetic/fer2013.csv"
    assert json.loads((repo / "metrics" / "data.json").read_text())["images"] == 6 * 7
    assert [report["splits"][split]["total"] for split in SPLITS] == [3 * 7, 2 * 7, 1 * 7]
    assert np.load(repo / "data" / "processed" / "valid_labels.npy").shape == (2 * 7,)

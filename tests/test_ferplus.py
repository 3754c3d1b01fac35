"""FER+ labels: the majority rule and the vote distributions on hand-made vote rows, the votes file's
checks, preprocess with `--labels ferplus`, and an eight-class model through training, evaluation,
calibration, prediction, export and serving beside a seven-class one."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from conftest import (
    SHARED_DATA,
    USAGES,
    committed_params_text,
    good_csv,
    make_folder,
    prefixed_folder,
    requires_shared_data,
    sample_images,
    write_arrays,
    write_untrained_checkpoint,
)
from ferkit.api import Analyzer
from ferkit.cli import main
from ferkit.data import ferplus, preprocess
from ferkit.data.arrays import load_classes, load_probabilities, load_split
from ferkit.emotions import FER2013_CLASSES, LABEL_SETS, SPLITS
from ferkit.errors import FerError
from ferkit.inference.models import load_classifier
from ferkit.models.checkpoint import load_checkpoint
from ferkit.serving.server import create_app

CLASSES = LABEL_SETS["ferplus"]
HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
COLUMN = {name: ferplus.VOTE_COLUMNS.index(column) for name, column in
          zip((*CLASSES, "unknown", "NF"), ferplus.VOTE_COLUMNS)}


def votes(**counts: int) -> list[int]:
    """One row of counts in our column order (CLASSES, unknown, NF), from class names."""
    row = [0] * len(ferplus.VOTE_COLUMNS)
    for name, count in counts.items():
        row[COLUMN[name]] = count
    return row


# --- the rule, row by row ----------------------------------------------------------------------

RULE_CASES = {
    "clear majority": (votes(Happy=6, Sad=4), "Happy"),
    "single votes are zeroed before counting": (votes(Happy=5, Sad=4, Angry=1), "Happy"),
    "a tie at the top is no majority": (votes(Happy=4, Sad=4, Fear=2), None),
    "exactly half is no majority": (votes(Happy=5, Sad=5), None),
    "unknown on top is dropped": (votes(unknown=6, Happy=4), None),
    "not a face on top is dropped": (votes(NF=10), None),
    "unknown votes count against the majority": (votes(Happy=4, unknown=3, Sad=2, Fear=1), None),
    "contempt is a class": (votes(Contempt=7, Neutral=3), "Contempt"),
    "only single votes leaves nothing": (votes(Angry=1, Disgust=1, Fear=1, Happy=1, Sad=1, Surprise=1, Neutral=1,
                                               Contempt=1, unknown=1, NF=1), None),
    "one vote is all it takes once the others are zeroed": (votes(Surprise=2, Angry=1, Fear=1), "Surprise"),
}


@pytest.mark.parametrize("case", RULE_CASES)
def test_majority_rule(case: str) -> None:
    row, expected = RULE_CASES[case]
    label = ferplus.majority_labels(np.array([row]))[0]
    assert label == (-1 if expected is None else CLASSES.index(expected))


def test_probability_labels_are_the_renormalised_votes_without_outliers() -> None:
    counts = np.array([votes(Happy=5, Sad=4, Angry=1), votes(Neutral=6, Contempt=2, unknown=2)])
    probabilities = ferplus.probability_labels(counts)
    assert probabilities.dtype == np.float32 and probabilities.shape == (2, len(CLASSES))
    assert probabilities[0, CLASSES.index("Happy")] == pytest.approx(5 / 9)
    assert probabilities[0, CLASSES.index("Sad")] == pytest.approx(4 / 9)
    assert probabilities[0, CLASSES.index("Angry")] == 0  # the single vote
    assert probabilities[1, CLASSES.index("Neutral")] == pytest.approx(0.75)  # unknown is not an emotion
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


# --- the votes file --------------------------------------------------------------------------------

# For conftest's seven CSV rows (USAGES): FER+ column order, as in fer2013new.csv.
VOTE_ROWS = (
    "fer0.png,0,10,0,0,0,0,0,0,0,0",   # Training: happiness -> Happy
    "fer1.png,0,0,0,0,9,0,1,0,0,0",    # PublicTest: anger -> Angry
    "fer2.png,3,0,0,0,0,0,0,7,0,0",    # Training: contempt -> Contempt
    ",8,0,0,0,0,0,0,0,0,0",            # PrivateTest: no image name -> dropped
    "fer4.png,0,0,0,5,0,0,0,0,5,0",    # Training: sadness and unknown tie -> dropped
    "fer5.png,0,0,6,0,0,0,0,0,0,4",    # PrivateTest: surprise -> Surprise
    "fer6.png,2,0,0,0,0,0,8,0,0,0",    # PublicTest: fear -> Fear
)


def write_votes(path: Path, rows: tuple[str, ...] = VOTE_ROWS, usages: tuple[str, ...] = USAGES,
                header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *(f"{usage},{row}" for usage, row in zip(usages, rows))]) + "\n")
    return path


def test_votes_columns_are_read_by_name_into_our_class_order(tmp_path: Path) -> None:
    read = ferplus.read_votes(write_votes(tmp_path / "votes.csv"))
    assert read.counts[0].tolist() == votes(Happy=10)
    assert read.counts[1].tolist() == votes(Angry=9, Fear=1)
    assert read.named.tolist() == [True, True, True, False, True, True, True]
    assert [SPLITS[code] for code in read.splits] == ["train", "valid", "train", "test", "train", "test", "valid"]


def test_preprocess_with_ferplus_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "processed"
    votes_path = write_votes(tmp_path / "v.csv")
    assert main(["preprocess", "--params", str(params_file(tmp_path)), "--source", str(good_csv(tmp_path)),
                 "--out", str(out), "--labels", "ferplus", "--ferplus-votes", str(votes_path)]) == 0
    assert "train 2, valid 2, test 1 images" in capsys.readouterr().out
    assert load_classes(out) == ("ferplus", CLASSES)
    images = sample_images()
    expected = {"train": ([0, 2], ["Happy", "Contempt"]), "valid": ([1, 6], ["Angry", "Fear"]),
                "test": ([5], ["Surprise"])}
    for split, (rows, names) in expected.items():
        split_images, labels = load_split(out, split)
        assert np.array_equal(split_images, images[rows])
        assert [CLASSES[label] for label in labels] == names
    probabilities = load_probabilities(out, load_split(out, "train")[1])
    assert probabilities[1, CLASSES.index("Contempt")] == pytest.approx(0.7)
    assert probabilities[1, CLASSES.index("Neutral")] == pytest.approx(0.3)
    report = json.loads((out / "data.json").read_text())
    assert report["labels"] == "ferplus" and report["splits"]["train"]["Contempt"] == 1


def test_fer2013_labels_write_one_hot_probabilities_and_seven_classes(tmp_path: Path) -> None:
    out = tmp_path / "processed"
    preprocess.run(params_file(tmp_path), source=str(good_csv(tmp_path)), out=out)
    assert load_classes(out) == ("fer2013", FER2013_CLASSES)
    labels = load_split(out, "train")[1]
    assert np.array_equal(load_probabilities(out, labels), np.eye(7, dtype=np.float32)[labels])


def params_file(folder: Path, **data: str) -> Path:
    params = yaml.safe_load(committed_params_text())
    params["data"].update(data)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


BAD_VOTES = {
    "a row fewer": (dict(rows=VOTE_ROWS[:-1], usages=USAGES[:-1]), r"v\.csv: 6 vote rows, but .*fer2013\.csv has 7 "
                                                                    r"rows: row i of the votes must describe row i"),
    "a word for a vote": (dict(rows=(VOTE_ROWS[0].replace(",10,", ",ten,"), *VOTE_ROWS[1:])),
                          r"v\.csv line 2: happiness vote 'ten' is not a whole number"),
    "a field missing": (dict(rows=(VOTE_ROWS[0], VOTE_ROWS[1].rsplit(",", 1)[0], *VOTE_ROWS[2:])),
                        r"v\.csv line 3: 11 fields, expected 12"),
    "an unknown usage": (dict(usages=("Training", "Validation", *USAGES[2:])),
                         r"v\.csv line 3: Usage 'Validation' is not one of Training, PublicTest, PrivateTest"),
    "rows in another order": (dict(usages=(USAGES[1], USAGES[0], *USAGES[2:])),
                              r"v\.csv line 2: Usage PublicTest, but .*fer2013\.csv line 2 is Training: the two "
                              "files do not line up"),
    "a header without contempt": (dict(header=HEADER.replace("contempt", "scorn")),
                                  r"v\.csv: not a FER\+ votes file: the header lacks 'contempt'"),
}


@pytest.mark.parametrize("case", BAD_VOTES)
def test_bad_votes_are_one_line_errors_and_write_nothing(tmp_path: Path, case: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    changes, message = BAD_VOTES[case]
    votes_path = write_votes(tmp_path / "v.csv", **changes)
    out = tmp_path / "processed"
    status = main(["preprocess", "--params", str(params_file(tmp_path)), "--source", str(good_csv(tmp_path)),
                   "--out", str(out), "--labels", "ferplus", "--ferplus-votes", str(votes_path)])
    error = capsys.readouterr().err
    assert status == 2 and len(error.strip().splitlines()) == 1, error
    assert re.search(message, error), error
    assert not out.exists()


def test_missing_votes_file_and_image_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FerError, match=r"nowhere\.csv: FER\+ votes file does not exist"):
        preprocess.run(params_file(tmp_path), source=str(good_csv(tmp_path)), out=tmp_path / "o", labels="ferplus",
                       ferplus_votes=str(tmp_path / "nowhere.csv"))
    folder = prefixed_folder(tmp_path / "images")
    with pytest.raises(FerError, match="FER\\+ labels need the Kaggle CSV"):
        preprocess.run(params_file(tmp_path), source=str(folder), out=tmp_path / "o", labels="ferplus",
                       ferplus_votes=str(write_votes(tmp_path / "v.csv")))


def test_unknown_label_set_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FerError, match="data.labels must be one of fer2013, ferplus"):
        preprocess.run(params_file(tmp_path, labels="affectnet"), source=str(good_csv(tmp_path)), out=tmp_path / "o")


@requires_shared_data
def test_majority_rule_counts_on_the_real_votes(tmp_path: Path) -> None:
    out = tmp_path / "processed"
    preprocess.run(params_file(tmp_path), source=str(SHARED_DATA / "fer2013" / "fer2013.csv.gz"), out=out,
                   labels="ferplus", ferplus_votes=str(SHARED_DATA / "ferplus" / "fer2013new.csv"))
    sizes = {split: len(load_split(out, split)[1]) for split in SPLITS}
    assert sizes == {"train": 25_060, "valid": 3_199, "test": 3_153}
    assert load_classes(out) == ("ferplus", CLASSES)


# --- an eight-class model beside a seven-class one ---------------------------------------------------

@pytest.fixture(scope="module")
def ferplus_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where an eight-class basic net was trained (2 epochs, soft targets) and evaluated."""
    folder = tmp_path_factory.mktemp("ferplus_run")
    write_arrays(folder / "data" / "processed", {"train": 128, "valid": 48, "test": 48}, label_set="ferplus")
    params = yaml.safe_load(committed_params_text())
    params["train"].update(epochs=2, batch_size=32, device="cpu", threads=1, precision="fp32", targets="probability")
    params["vgg"]["epochs"] = 1
    params["evaluate"]["device"] = "cpu"
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for model in ("basic", "vgg"):
            assert main(["train", model]) == 0
        assert main(["evaluate"]) == 0
    return folder


def test_checkpoint_metrics_and_confusion_name_eight_classes(ferplus_run: Path) -> None:
    checkpoint = load_checkpoint(ferplus_run / "models/basic/best.pt")
    assert checkpoint["classes"] == list(CLASSES) and checkpoint["labels"] == "ferplus"
    metrics = json.loads((ferplus_run / "metrics/basic.json").read_text())
    assert list(metrics["test"]["f1"]) == list(CLASSES)
    report = json.loads((ferplus_run / "reports/vgg.json").read_text())
    assert report["classes"] == list(CLASSES) and "Contempt" in report["test"]["plain"]["per_class"]
    confusion = (ferplus_run / "plots/basic/confusion.csv").read_text().split()
    assert set(confusion[1:]) <= {",".join((a, b)) for a in CLASSES for b in CLASSES}
    assert (ferplus_run / "plots/figures/confusion_basic.png").stat().st_size > 0


def test_evaluating_a_model_on_other_classes_is_a_clear_error(ferplus_run: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:

    shutil.copytree(ferplus_run, tmp_path / "run")
    write_arrays(tmp_path / "run" / "data" / "processed", {"train": 16, "valid": 16, "test": 16})  # FER-2013's
    monkeypatch.chdir(tmp_path / "run")
    with pytest.raises(FerError, match="trained on classes Angry, .*, Contempt, but the data's are Angry, .*, "
                                       "Neutral: retrain it"):
        from ferkit.evaluation import evaluate
        evaluate.run()


def test_both_label_sets_predict_side_by_side(ferplus_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    seven = write_untrained_checkpoint(tmp_path / "seven.pt")
    eight = ferplus_run / "models/basic/best.pt"
    image = make_folder(tmp_path / "faces", {"face.png": sample_images(1)[0]}) / "face.png"
    for checkpoint, classes in ((seven, FER2013_CLASSES), (eight, CLASSES)):
        assert main(["predict", str(image), "--model", str(checkpoint), "--detector", "none", "--json", "-"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["emotions"] == list(classes)
        assert list(result["images"][0]["faces"][0]["probabilities"]) == list(classes)
        assert main(["predict", str(image), "--model", str(checkpoint), "--detector", "none"]) == 0
        assert capsys.readouterr().out.splitlines()[0].split()[-1] == classes[-1]  # the table's last column


def test_onnx_export_and_serve_carry_the_eight_classes(ferplus_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "ferplus.onnx"
    assert main(["export", "--model", str(ferplus_run / "models/basic/best.pt"), "--onnx", str(onnx_path)]) == 0
    classifier = load_classifier(onnx_path)
    assert classifier.classes == CLASSES
    assert classifier.predict_proba(sample_images(3)).shape == (3, len(CLASSES))
    assert classifier.predict_proba(sample_images(3)[:0]).shape == (0, len(CLASSES))
    with TestClient(create_app(Analyzer(onnx_path), "ferplus.onnx", max_upload_bytes=1 << 20)) as client:
        health = client.get("/api/health").json()
    assert health["classes"] == list(CLASSES) and set(health["colours"]) == set(CLASSES)
    assert len(set(health["colours"].values())) == len(CLASSES)  # one colour per class


def test_calibrate_keeps_the_classes(ferplus_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "calibrated.pt"
    assert main(["calibrate", str(ferplus_run / "models/basic/best.pt"), "--out", str(out),
                 "--data", str(ferplus_run / "data/processed"), "--half"]) == 0
    assert load_checkpoint(out)["classes"] == list(CLASSES)
    seven = tmp_path / "seven"
    write_arrays(seven, {"valid": 16})
    with pytest.raises(FerError, match="trained on classes .*Contempt, but .* holds Angry"):
        from ferkit.evaluation import calibration
        calibration.run([ferplus_run / "models/basic/best.pt"], tmp_path / "no.pt", seven)
    assert not (tmp_path / "no.pt").exists()


def test_evaluate_data_scores_ferplus_majority_labels(ferplus_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    model = str(ferplus_run / "models/basic/best.pt")
    source, votes_path = good_csv(tmp_path), write_votes(tmp_path / "v.csv")
    out = tmp_path / "result.json"
    assert main(["evaluate", "--data", str(source), "--model", model, "--ferplus-votes", str(votes_path),
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["images"] == 5 and result["classes"] == list(CLASSES)
    assert result["per_class"]["Contempt"]["support"] == 1
    capsys.readouterr()
    assert main(["evaluate", "--data", str(source), "--model", model]) == 2
    assert "give the FER+ votes file with --ferplus-votes" in capsys.readouterr().err
    seven = str(write_untrained_checkpoint(tmp_path / "seven.pt"))
    assert main(["evaluate", "--data", str(source), "--model", model, seven]) == 2
    assert "an ensemble needs one class set" in capsys.readouterr().err

"""The CLI's last line of defence: OS errors are one line, a closed pipe is not an error; an option
that has no effect in the chosen mode is an error; a command whose flags say everything it needs
runs without params.yaml."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from conftest import USAGES, committed_params_text, good_csv
from ferkit import cli
from ferkit.choices import MODEL_NAMES, SHIPPED_MODELS
from ferkit.data.arrays import load_classes, load_split
from ferkit.emotions import FER2013_CLASSES
from ferkit.params import DATA_CODE_DEFAULTS, DEFAULT_PARAMS


def failing_with(error: BaseException):
    def handler(args: argparse.Namespace) -> int:
        raise error

    return handler


def test_os_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(cli, "_export", failing_with(PermissionError(13, "Permission denied", "out/m.onnx")))
    assert cli.main(["export", "--onnx", "out/m.onnx"]) == 2
    assert capfd.readouterr().err == "fer: error: out/m.onnx: Permission denied\n"


def test_closed_pipe_exits_quietly(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(cli, "_export", failing_with(BrokenPipeError(32, "Broken pipe")))
    assert cli.main(["export", "--onnx", "m.onnx"]) == 141
    assert capfd.readouterr().err == ""


# --- an option with no effect in the chosen mode is an error ----------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["--split", "PrivateTest"], "--split applies only with --data"),
    (["--json", "out.json"], "--json applies only with --data"),
    (["--tta", "none"], "--tta applies only with --data"),  # given, even if it is the default
    (["--ferplus-votes", "votes.csv"], "--ferplus-votes applies only with --data"),
    (["--model", "fer2013"], "--model applies only with --data"),
    (["--data", "faces", "--models", "vgg"], "--models has no effect with --data"),
    (["--data", "faces", "--params", "params.yaml"], "--params has no effect with --data"),
])
def test_evaluate_refuses_an_option_of_the_other_mode(monkeypatch: pytest.MonkeyPatch, capsys, args: list[str],
                                                      message: str) -> None:
    monkeypatch.setattr(cli, "_run_module", lambda *_, **__: pytest.fail("ran despite the error"))
    assert cli.main(["evaluate", *args]) == 2
    assert capsys.readouterr().err == f"fer: error: {message}\n"


def test_evaluate_defaults_apply_in_each_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(cli, "_run_module", lambda command, **options: calls.append((command, options)) or 0)
    assert cli.main(["evaluate"]) == 0
    assert cli.main(["evaluate", "--data", "faces"]) == 0
    assert calls == [
        ("evaluate", {"params_path": DEFAULT_PARAMS, "models": list(MODEL_NAMES)}),
        ("evaluate --data", {"data": Path("faces"), "models": [SHIPPED_MODELS[0]], "split": None, "json_out": None,
                             "tta": "none", "ferplus_votes": None}),
    ]


# --- preprocess needs no params.yaml when its flags say everything ------------------------------------

def test_preprocess_outside_a_project_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    source = good_csv(tmp_path)
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    assert cli.main(["preprocess", "--source", str(source), "--out", "arrays"]) == 0
    assert load_classes(tmp_path / "arrays") == ("fer2013", FER2013_CLASSES)
    assert len(load_split(tmp_path / "arrays", "test")[1]) == USAGES.count("PrivateTest")
    assert not (tmp_path / "metrics").exists()  # --out: no pipeline metric
    capsys.readouterr()
    assert cli.main(["preprocess", "--source", str(source)]) == 2
    assert capsys.readouterr().err == ("fer: error: params.yaml: parameters file does not exist (outside a project "
                                       "folder, give --source and --out)\n")
    assert cli.main(["preprocess", "--source", str(source), "--out", "o", "--params", "mine.yaml"]) == 2
    assert "mine.yaml: parameters file does not exist" in capsys.readouterr().err
    assert cli.main(["preprocess", "--source", str(source), "--out", "o", "--labels", "ferplus"]) == 2
    assert "give the FER+ votes file with --ferplus-votes" in capsys.readouterr().err
    assert cli.main(["preprocess", "--source", str(source), "--out", "o", "--ferplus-votes", "v.csv"]) == 2
    assert "--ferplus-votes applies only to FER+ labels; these are fer2013's" in capsys.readouterr().err


def test_the_code_defaults_are_the_committed_parameters() -> None:
    committed = yaml.safe_load(committed_params_text())["data"]
    assert {key: committed[key] for key in DATA_CODE_DEFAULTS} == DATA_CODE_DEFAULTS

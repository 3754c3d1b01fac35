"""The CLI's last line of defence: OS errors are one line, a closed pipe is not an error."""

from __future__ import annotations

import argparse

import pytest

from fer import cli


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

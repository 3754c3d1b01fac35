"""Device and precision choices: `precision: auto` takes bf16 only where the hardware computes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ferkit import runtime


@pytest.mark.parametrize(("flags", "expected"), [
    ("fpu sse2 avx2 avx512f avx512_bf16", True), ("fpu sse2 avx2 amx_bf16 amx_tile", True),
    ("fpu sse2 avx2 avx512f", False), ("", False)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path, flags: str, expected: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n")
    assert runtime.cpu_has_bf16(cpuinfo) is expected


def test_no_cpuinfo_means_no_bf16(tmp_path: Path) -> None:
    assert runtime.cpu_has_bf16(tmp_path / "absent") is False


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_cpu_follows_the_flags(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: native)
    assert runtime.resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    assert runtime.resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert runtime.inference_precision(torch.device("cpu")) == "fp32"


def test_cuda_always_takes_bf16_under_auto() -> None:
    assert runtime.resolve_precision("auto", torch.device("cuda")) == "bf16"

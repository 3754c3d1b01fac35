"""The benchmarks' shared timing takes turns as documented, and the throughput benchmark runs end to end
on small data with its ratios paired.

No speed is asserted here: the targets are for the benchmark's own report, on a quiet machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import write_arrays

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def common(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/common.py, loaded by path; what its import changes (sys.path, PYTHONPATH) is undone after."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    spec = importlib.util.spec_from_file_location("benchmarks_common", REPO / "benchmarks" / "common.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_interleaved_reverses_the_order_every_other_round(common: ModuleType) -> None:
    order: list[str] = []
    reported: list[tuple[int, str, int]] = []
    variants = {name: (lambda name=name: order.append(name) or len(order)) for name in "abc"}
    results = common.interleaved(variants, 4, lambda *result: reported.append(result))
    assert "".join(order) == "abc" + "cba" + "abc" + "cba"
    assert results == {"a": [1, 6, 7, 12], "b": [2, 5, 8, 11], "c": [3, 4, 9, 10]}
    assert list(results) == ["a", "b", "c"]
    assert reported[:4] == [(1, "a", 1), (1, "b", 2), (1, "c", 3), (2, "c", 4)]
    assert sys.path[0] == str(REPO / "src") and os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(REPO / "src")


def test_machine_names_the_code_and_the_machine(common: ModuleType) -> None:
    about = common.machine()
    assert set(about) == {"cpu", "cores", "usable_cores", "load_average", "python", "torch", "commit"}
    assert about["cpu"] and about["cores"] >= about["usable_cores"] >= 1 and len(about["load_average"]) == 3
    assert about["commit"] == common.git_commit()


def test_train_throughput_pairs_every_round(tmp_path: Path) -> None:
    write_arrays(tmp_path / "data", {"train": 48})
    report = tmp_path / "out" / "throughput.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--models", "basic",
         "--devices", "cpu", "--images", "32", "--batch-size", "16", "--repeats", "3", "--workers", "0",
         "--data", str(tmp_path / "data"), "--json", str(report)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads(report.read_text())["results"]
    assert [row["precision"] for row in results] == ["fp32", "bf16"]
    for row in results:
        passes = row["passes"]
        assert set(passes) == {"loader", "ours fp32", "bare fp32", "ours bf16", "bare bf16", "seed"}
        assert all(len(values) == 3 and min(values) > 0 for values in passes.values())
        ours, bare = passes[f"ours {row['precision']}"], passes[f"bare {row['precision']}"]
        ratios = [a / b for a, b in zip(ours, bare)]
        assert row["a_over_b"] == {"median": statistics.median(ratios), "low": min(ratios), "high": max(ratios)}
        assert row["ours"] == statistics.median(ours) and row["bare"] == statistics.median(bare)
        assert (row["a_over_c"] is None) == (row["precision"] == "fp32")
    assert results[1]["a_over_c"]["median"] == statistics.median(
        a / c for a, c in zip(results[1]["passes"]["ours bf16"], results[1]["passes"]["seed"]))
    assert "a/b (range)" in done.stdout and ("PASS" in done.stdout or "FAIL" in done.stdout)

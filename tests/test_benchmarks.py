"""The throughput benchmark runs end to end on small data, and its ratios are paired as documented.

No speed is asserted here: the targets are for the benchmark's own report, on a quiet machine.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from test_train import write_arrays

REPO = Path(__file__).resolve().parents[1]


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

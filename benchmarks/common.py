"""What every benchmark script shares: this checkout's code, a description of the machine, and timing in turns.

Import it before `fer` (`from common import ...` sorts first): importing it puts this checkout's src/ first
on sys.path, and on PYTHONPATH for the processes the benchmarks start (`python -m ferkit ...`, fresh children),
so a figure always belongs to the code beside the script, installed or not (the GPU machine has the
dependencies but not our package).
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
_SRC = str(REPO / "src")
sys.path.insert(0, _SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_SRC, os.environ.get("PYTHONPATH")]))

T = TypeVar("T")


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def git_commit() -> str:
    """Short commit, with -dirty when tracked files differ from it: numbers belong to exact code."""
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> dict[str, Any]:
    """What a figure was measured on. The load average is in it because other processes' load skews CPU
    timings badly (OpenMP threads wait for descheduled peers). torch's version comes from its package
    metadata, so describing the machine never imports torch into a process that does not use it."""
    try:
        torch_version: str | None = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    return {
        "cpu": cpu_name(), "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "python": platform.python_version(), "torch": torch_version, "commit": git_commit(),
    }


def interleaved(variants: Mapping[str, Callable[[], T]], rounds: int,
                on_result: Callable[[int, str, T], None] | None = None) -> dict[str, list[T]]:
    """Every variant's measurements (whatever its callable returns: seconds, img/s, a child's report),
    in round order, each variant run once per round and the order reversed every other round.

    On a shared machine the background load drifts within seconds, so two figures taken minutes apart
    compare the machine with itself; variants that take turns meet the same load, and reversing the
    order keeps any one variant from always going first (or always following the same neighbour).
    `on_result(round, name, value)`, rounds counted from 1, reports progress."""
    results: dict[str, list[T]] = {name: [] for name in variants}
    for round_number in range(1, rounds + 1):
        for name in list(variants) if round_number % 2 else reversed(list(variants)):
            results[name].append(variants[name]())
            if on_result:
                on_result(round_number, name, results[name][-1])
    return results


def seconds_in_turns(actions: Mapping[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per run of each action, the actions taking turns (`interleaved`) so that all meet the
    same background load; the untimed warm-up rounds load lazily built kernels and caches."""
    def stopwatch(action: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            action()
            return time.perf_counter() - start
        return run

    interleaved(actions, warmup)
    return interleaved({name: stopwatch(action) for name, action in actions.items()}, runs)

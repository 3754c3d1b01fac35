"""preprocess speed on the real CSV: the whole `fer preprocess` against two per-row parsers.

    .venv/bin/python benchmarks/preprocess.py [--repeats R] [--json FILE]

On ../shared/data/fer2013/fer2013.csv.gz (35,887 rows; 94 MB gzip, 301 MB of text):
  split       pandas.read_csv, then `np.asarray(row.split(), np.uint8)` for every row
  fromstring  pandas.read_csv, then `np.fromstring(row, np.uint8, sep=" ")` for every row
  ours        `ferkit.data.preprocess.run` into a temporary folder: decompress, parse, check every row,
              build the data report (duplicates included) and write the six .npy files
Both baselines also cut their rows into the three splits, which is all they do: no checks, no
report, no files. Each run is a fresh process, so its peak RSS (ru_maxrss) is its own; the clock
starts after imports. For the baselines the time is also given as read (pandas.read_csv,
decompression included) and parse (the per-row loop alone). CPU seconds (all threads) are shown
too: on a machine shared with other work they move less than wall-clock seconds.
Targets: ours <= 1.5x fromstring, split >= 3x ours, ours' peak RSS <= 1 GB. With --repeats R the
variants take R interleaved turns (common.interleaved: the order reversed every other turn) and each
one's fastest run counts, as interference from other work on a shared machine only ever slows a run down.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from common import REPO, interleaved, machine

DATA = REPO.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"
VARIANTS = ("split", "fromstring", "ours")
TARGET_OURS_OVER_FROMSTRING = 1.5
TARGET_SPLIT_OVER_OURS = 3.0
TARGET_PEAK_MB = 1024


# --- the variants, each run in a child process -------------------------------------------------

def _baseline(parse_row: Any) -> dict[str, float]:
    import numpy as np
    import pandas as pd

    start = time.perf_counter()
    frame = pd.read_csv(DATA)
    read = time.perf_counter()
    images = np.stack([parse_row(row) for row in frame["pixels"]]).reshape(-1, 48, 48)
    labels, usage = frame["emotion"].to_numpy(np.int64), frame["Usage"].to_numpy()
    splits = {name: (images[usage == name], labels[usage == name])
              for name in ("Training", "PublicTest", "PrivateTest")}
    done = time.perf_counter()
    assert sum(len(part_labels) for _, part_labels in splits.values()) == 35_887
    return {"seconds": done - start, "read": read - start, "parse": done - read}


def run_split() -> dict[str, float]:
    import numpy as np

    return _baseline(lambda row: np.asarray(row.split(), dtype=np.uint8))


def run_fromstring() -> dict[str, float]:
    import numpy as np

    return _baseline(lambda row: np.fromstring(row, dtype=np.uint8, sep=" "))


def run_ours() -> dict[str, float]:
    from ferkit.data import preprocess  # this checkout's: common put its src/ first

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        preprocess.run(REPO / "params.yaml", source=str(DATA), out=Path(tmp) / "processed")
        done = time.perf_counter()
    return {"seconds": done - start}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(variant: str) -> None:
    run = {"split": run_split, "fromstring": run_fromstring, "ours": run_ours}[variant]
    before = cpu_seconds()
    result = run()
    result["cpu"] = cpu_seconds() - before  # all threads; imports are not in it, as they run first
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(result))


def measure(variant: str) -> dict[str, float]:
    finished = subprocess.run([sys.executable, __file__, "--child", variant], capture_output=True, text=True)
    if finished.returncode != 0:
        sys.exit(f"benchmarks/preprocess.py: the {variant} run failed:\n{finished.stderr}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


# --- the report ----------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES TARGET"


def report(results: dict[str, dict[str, float]], about: dict[str, Any], repeats: int) -> str:
    def cell(variant: str, key: str) -> str:
        value = results[variant].get(key)
        return f"{value:7.2f}" if value is not None else "      -"

    ours, fromstring, split = (results[name]["seconds"] for name in ("ours", "fromstring", "split"))
    lines = [
        f"machine: {about['cpu']}, {about['cores']} cores, load average {about['load_average']} at the start",
        f"commit:  {about['commit']} (Python {about['python']})",
        f"data:    {DATA}",
        f"fastest of {repeats} run(s) each, in a fresh process",
        "",
        "variant      seconds    read   parse  CPU seconds   peak RSS MB",
        *(f"{name:<11} {cell(name, 'seconds')} {cell(name, 'read')} {cell(name, 'parse')}     "
          f"{cell(name, 'cpu')}      {results[name]['peak_mb']:8.0f}" for name in VARIANTS),
        "",
        f"ours / fromstring        {ours / fromstring:5.2f}   target <= {TARGET_OURS_OVER_FROMSTRING}: "
        f"{verdict(ours / fromstring <= TARGET_OURS_OVER_FROMSTRING)}",
        f"ours / fromstring parse  {ours / results['fromstring']['parse']:5.2f}   (its per-row loop alone)",
        f"split / ours             {split / ours:5.2f}   target >= {TARGET_SPLIT_OVER_OURS}: "
        f"{verdict(split / ours >= TARGET_SPLIT_OVER_OURS)}",
        f"CPU seconds: ours / fromstring {results['ours']['cpu'] / results['fromstring']['cpu']:.2f}, "
        f"split / ours {results['split']['cpu'] / results['ours']['cpu']:.2f} (less sensitive to other load)",
        f"ours peak RSS MB         {results['ours']['peak_mb']:5.0f}   target <= {TARGET_PEAK_MB}: "
        f"{verdict(results['ours']['peak_mb'] <= TARGET_PEAK_MB)}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1,
                        help="interleaved runs per variant; the fastest counts")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if not DATA.is_file():
        sys.exit(f"benchmarks/preprocess.py: {DATA} not found; this benchmark needs the real FER-2013 CSV "
                 "beside the project, at ../shared/data/fer2013/fer2013.csv.gz")
    about = machine()
    runs = interleaved({variant: partial(measure, variant) for variant in VARIANTS}, args.repeats,
                       lambda turn, variant, run: print(f"turn {turn}/{args.repeats}: {variant:<10} "
                                                        f"{run['seconds']:6.2f} s", file=sys.stderr))
    results = {variant: {**min(found, key=lambda run: run["seconds"]),
                         "peak_mb": max(run["peak_mb"] for run in found)} for variant, found in runs.items()}
    print(report(results, about, args.repeats))
    if args.json:
        args.json.write_text(json.dumps({"machine": about, "repeats": args.repeats, "results": results,
                                         "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()

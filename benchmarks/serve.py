"""`fer serve`: the prediction path of one photo with each face detector, and a load test.

    .venv/bin/python benchmarks/serve.py [--model fer2013] [--runs 60] [--requests 500] [--concurrency 16]
        [--compare MODEL ...] [--json FILE]

Speed: one 640x480 JPEG holding one face (the real portrait of ../shared/data/photos cut to 4:3 and
scaled, its face about 135 pixels; without it, the latency scene of benchmarks/predict.py), from its
bytes in memory to calibrated probabilities: decode, find faces, crop, classify, the model already
loaded. All are `ferkit.serving.server.predict_bytes`; only the detector differs: "yunet" is the default
where its wheel installs (YuNet on a copy of 480 pixels), "hog" the default elsewhere (dlib's HOG at
80/60 of the photo: faces from 60 pixels), "haar" the half-size Haar search that was the default
before them (the whole-image Haar search used before `fer serve` existed was timed until
2026-12-02: benchmarks/README.md); with --compare, the default detector's path with each other model (say, the
single network against an ensemble). They take turns (common.interleaved); reported: each one's median and
p90, and the median of the per-round ratios of each to hog.

Load: `fer serve` started on 127.0.0.1 (a free port) in a child process; --requests POSTs of that
photo, --concurrency at a time over keep-alive connections, after a warm-up burst. Reported:
throughput, latency percentiles, errors (any answer but 200 with one face), and the server's RSS
after the warm-up and after the run.

Speed does not depend on what the weights learned, so an untrained VGG stands in when the shipped
model is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from common import REPO, machine, seconds_in_turns
from ferkit.api import Analyzer
from ferkit.choices import default_detector, yunet_module
from ferkit.errors import FerError
from ferkit.inference.models import load_classifier
from ferkit.serving.server import predict_bytes
from predict import checkpoint_for, face_images, scene

PORTRAIT = REPO.parent / "shared" / "data" / "photos" / "portrait.jpg"
# Haar before `fer serve`: the whole image (up to 1600 pixels), scale steps of 1.1, 5 neighbours.
BOUNDARY = "fer-benchmark-boundary"
WARMUP_REQUESTS = 100


def percentile(values: list[float], share: float) -> float:
    return float(np.percentile(values, share))


def speed(data: bytes, model: str, runs: int, others: list[str]) -> dict[str, Any]:
    """Each detector with `model`, and the default detector with each of `others`; the ratios are to
    hog's photo path, timed in the same rounds."""
    default = default_detector()
    names = [*(["yunet"] if yunet_module() is not None else []), "hog", "haar"]
    analyzers = {name: Analyzer(model, detector=name) for name in names}
    analyzers |= {f"{default}, model {other}": Analyzer(other, detector=default) for other in others}
    actions = {name: partial(predict_bytes, data, analyzer) for name, analyzer in analyzers.items()}
    faces = {name: len(action().faces) for name, action in actions.items()}
    seconds = seconds_in_turns(actions, runs, warmup=5)
    report: dict[str, Any] = {
        name: {"median_ms": 1000 * statistics.median(values), "p90_ms": 1000 * percentile(values, 90),
               "faces": faces[name]} for name, values in seconds.items()}
    for name in [name for name in actions if name != "hog"]:
        ratios = [other / hog for other, hog in zip(seconds[name], seconds["hog"])]
        report[name]["ratio_to_hog"] = {"median": statistics.median(ratios), "p10": percentile(ratios, 10),
                                            "p90": percentile(ratios, 90)}
    report["runs"] = runs
    return report


def photo(folder: Path) -> tuple[bytes, str]:
    """The 640x480 one-face JPEG: the real portrait when it is here, else a face pasted into a scene."""
    if PORTRAIT.is_file():
        image = cv2.imread(str(PORTRAIT))
        height = round(image.shape[1] * 3 / 4)  # 4:3 from the top, where the face is
        image = cv2.resize(image[:height], (640, 480), interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        return encoded.tobytes(), f"photo: {PORTRAIT.name} cut to 4:3 and scaled to 640x480"
    files, folder_note = face_images(folder)
    return scene(files, folder / "scene.jpg").read_bytes(), f"scene face from {folder_note}"


def multipart(data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"scene.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def running_server(model: str) -> Any:
    """`fer serve` on 127.0.0.1 and a free port; yields (process, port)."""
    process = subprocess.Popen([sys.executable, "-m", "ferkit", "serve", "--model", model, "--host", "127.0.0.1",
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not found:
            raise SystemExit(f"fer serve did not start: {line}{process.stdout.read()}")
        # The server logs only warnings; drain them so that a full pipe never blocks it.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield process, int(found.group(1))
    finally:
        process.terminate()
        process.wait(timeout=30)


def burst(port: int, body: bytes, requests: int, concurrency: int) -> tuple[list[float], list[str], float]:
    """`requests` POSTs, `concurrency` at a time, each worker on its own keep-alive connection:
    (latencies in seconds, error descriptions, wall seconds)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    remaining = iter(range(requests))
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if next(remaining, None) is None:
                    break
            start = time.perf_counter()
            try:
                connection.request("POST", "/api/predict", body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                problem = None if response.status == 200 and len(json.loads(answer)["faces"]) == 1 else \
                    f"{response.status}: {answer[:200]!r}"
            except (OSError, http.client.HTTPException, ValueError) as error:
                problem = f"{type(error).__name__}: {error}"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                latencies.append(time.perf_counter() - start)
                if problem:
                    errors.append(problem)
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - start


def load(model: str, data: bytes, requests: int, concurrency: int) -> dict[str, Any]:
    body = multipart(data)
    with running_server(model) as (process, port):
        started_mb = rss_mb(process.pid)
        _, warm_errors, _ = burst(port, body, WARMUP_REQUESTS, concurrency)
        before_mb = rss_mb(process.pid)
        latencies, errors, wall = burst(port, body, requests, concurrency)
        after_mb = rss_mb(process.pid)
    return {"requests": requests, "concurrency": concurrency, "seconds": wall, "throughput": requests / wall,
            "p50_ms": 1000 * percentile(latencies, 50), "p95_ms": 1000 * percentile(latencies, 95),
            "p99_ms": 1000 * percentile(latencies, 99), "max_ms": 1000 * max(latencies),
            "errors": len(errors) + len(warm_errors), "first_errors": (warm_errors + errors)[:5],
            "rss_mb": {"started": started_mb, f"after {WARMUP_REQUESTS} warm-up requests": before_mb,
                       f"after {requests} requests": after_mb}}


def model_for(name: str, folder: Path) -> tuple[str, str]:
    """The model to serve: `name` when it loads, else an untrained VGG with the same speed."""
    with contextlib.suppress(FerError):
        load_classifier(name)
        return name, f"model: {name}"
    stand_in, note = checkpoint_for(Path(name), folder)
    return str(stand_in), note


def report_lines(about: dict[str, Any], note: str, fast: dict[str, Any], burst_report: dict[str, Any]) -> list[str]:
    load_average = ", ".join(f"{value:.2f}" for value in about["load_average"])
    lines = [f"machine: {about['cpu']}; {about['cores']} cores ({about['usable_cores']} usable); torch threads "
             f"{torch.get_num_threads()}; load average at the end {load_average}",
             f"python {about['python']}, torch {about['torch']}; git {about['commit']}", note, "",
             f"one 640x480 JPEG with one face, decode + detect + classify, {fast['runs']} interleaved runs each:"]
    for name, figures in fast.items():
        if name == "runs":
            continue
        lines.append(f"  {name}: median {figures['median_ms']:.1f} ms, p90 {figures['p90_ms']:.1f} ms, "
                     f"{figures['faces']} face(s) found")
        if "ratio_to_hog" in figures:
            ratio = figures["ratio_to_hog"]
            lines[-1] += (f"; {name}/hog median of per-round ratios {ratio['median']:.2f} "
                          f"(p10 {ratio['p10']:.2f}, p90 {ratio['p90']:.2f})")
    lines.append("")
    rss = ", ".join(f"{key} {value:.0f} MB" for key, value in burst_report["rss_mb"].items())
    lines += [f"load: {burst_report['requests']} requests, {burst_report['concurrency']} concurrent, to "
              f"127.0.0.1 in {burst_report['seconds']:.1f} s",
              f"  throughput {burst_report['throughput']:.1f} requests/s; latency p50 {burst_report['p50_ms']:.0f} ms, "
              f"p95 {burst_report['p95_ms']:.0f} ms, p99 {burst_report['p99_ms']:.0f} ms, "
              f"max {burst_report['max_ms']:.0f} ms",
              f"  errors {burst_report['errors']}; server RSS: {rss}"]
    return lines + [f"  first errors: {burst_report['first_errors']}"] * bool(burst_report["errors"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fer2013", help="shipped model name or model file (default: fer2013)")
    parser.add_argument("--runs", type=int, default=60, help="timed runs of each path")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    parser.add_argument("--compare", nargs="+", default=[], metavar="MODEL",
                        help="also time the photo path (default detector) with these models, in the same turns")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model, note = model_for(args.model, folder)
        data, photo_note = photo(folder)
        fast = speed(data, model, args.runs, args.compare)
        burst_report = load(model, data, args.requests, args.concurrency)
    about = machine()
    print("\n".join(report_lines(about, f"{note}; {photo_note}", fast, burst_report)))
    if args.json:
        args.json.write_text(json.dumps({"machine": about, "model": note, "speed": fast, "load": burst_report},
                                        indent=2) + "\n")
    if burst_report["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

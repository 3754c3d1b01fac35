"""`fer serve`'s API: the shape of its answers, hostile uploads (wrong type, truncated, bombs, too
large, malformed requests), the static files, and the command itself in a real process."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import REPO, png_claiming, write_untrained_checkpoint
from ferkit.api import Analyzer
from ferkit.choices import default_detector
from ferkit.cli import main
from ferkit.data.synth import generate
from ferkit.emotions import FER2013_CLASSES
from ferkit.inference.detectors import make_detector
from ferkit.serving.predict import Source, predict_images, to_json
from ferkit.serving.server import WORKER_SETTINGS_VARIABLE, WorkerSettings, create_app, worker_app

LIMIT = 1024 * 1024  # a small upload limit, so that "too large" needs no big buffers


@functools.cache
def _scene(seed: int, width: int, height: int, side: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    background = 60 + 100 * cols / width + 40 * rows / height
    detector = make_detector(default_detector())
    faces, _ = generate(3, seed=seed)
    for face in faces:
        scene = np.clip(background + np.random.default_rng(seed).normal(0, 6, (height, width)), 0, 255)
        scene = scene.astype(np.uint8)
        top, left = (height - side) // 2, (width - side) // 2
        scene[top:top + side, left:left + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        if len(detector(scene)) == 1:
            return cv2.cvtColor(scene, cv2.COLOR_GRAY2BGR)
    raise AssertionError("no synthetic face is detectable")


def face_scene(seed: int = 0, width: int = 640, height: int = 480, side: int = 220) -> np.ndarray:
    """A BGR photo-like scene holding one synthetic face that the default detector finds (ferkit.data.synth
    draws it)."""
    return _scene(seed, width, height, side).copy()


def encode(image: np.ndarray, suffix: str = ".jpg") -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("model") / "basic.pt")


@pytest.fixture(scope="module")
def client(checkpoint: Path) -> Iterator[TestClient]:
    app = create_app(Analyzer(checkpoint), "basic.pt", max_upload_bytes=LIMIT)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def photo() -> bytes:
    return encode(face_scene())


def post(client: TestClient, data: bytes, name: str = "photo.jpg", field: str = "file"):
    return client.post("/api/predict", files={field: (name, data, "application/octet-stream")})


def assert_one_line_error(response, status: int | tuple[int, ...], *words: str) -> str:
    assert response.status_code in ((status,) if isinstance(status, int) else status), response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail, detail
    for word in words:
        assert word in detail, detail
    return detail


def test_health_names_the_model_and_classes(client):
    health = client.get("/api/health").json()
    assert health["model"] == {"name": "basic.pt", "architecture": "basic", "kind": "checkpoint", "temperature": 1.0}
    assert health["classes"] == list(FER2013_CLASSES) and health["max_upload_bytes"] == LIMIT
    assert health["detector"] == default_detector()


def test_predict_answers_like_fer_predict_json(client, photo, checkpoint, tmp_path):
    response = post(client, photo)
    assert response.status_code == 200, response.text
    body = response.json()
    path = tmp_path / "photo.jpg"
    path.write_bytes(photo)
    analyzer = Analyzer(checkpoint)
    results, _ = predict_images([Source(path, Path(path.name))], analyzer)
    expected = to_json(results, [], analyzer)["images"][0]
    assert body.pop("elapsed_ms") >= 0
    assert body == {key: value for key, value in expected.items() if key != "path"}
    assert (body["width"], body["height"]) == (640, 480) and len(body["faces"]) == 1
    face = body["faces"][0]
    assert face["emotion"] == max(face["probabilities"], key=face["probabilities"].get)
    assert abs(sum(face["probabilities"].values()) - 1) < 1e-4


def test_format_comes_from_the_bytes_not_the_name(client, photo):
    assert post(client, photo, name="notes.txt").status_code == 200
    png = encode(face_scene(), ".png")
    assert len(post(client, png, name="picture.jpg").json()["faces"]) == 1
    assert_one_line_error(post(client, b"hello, I am text\n" * 20, name="photo.jpg"), 422, "not an image")


def test_image_without_a_face_has_no_faces(client):
    blank = np.full((120, 160, 3), 128, np.uint8)
    body = post(client, encode(blank, ".png")).json()
    assert body["faces"] == [] and (body["width"], body["height"]) == (160, 120)


@pytest.mark.parametrize("case, words", [
    ("empty", ["empty"]),
    ("truncated jpeg", ["truncated"]),
    ("truncated png", ["decode"]),
    ("bomb", ["megapixel"]),
    ("zero size", ["corrupt header"]),
])
def test_unusable_images_get_422_with_one_line(client, photo, case, words):
    png = encode(face_scene(), ".png")
    data = {"empty": b"", "truncated jpeg": photo[:len(photo) // 2], "truncated png": png[:len(png) // 2],
            "bomb": png_claiming(100_000, 100_000), "zero size": png_claiming(0, 10)}[case]
    assert_one_line_error(post(client, data), 422, *words)


def test_too_large_is_413_whatever_the_length_says(client):
    big = b"\xff\xd8" + bytes(LIMIT)  # starts like a JPEG; the size alone must refuse it
    assert_one_line_error(post(client, big), 413, "over the")
    declared = client.post("/api/predict", content=b"x", headers={"Content-Type": "multipart/form-data; boundary=b",
                                                                  "Content-Length": str(10 * LIMIT)})
    assert_one_line_error(declared, 413, "over the")

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, so only counting can stop it
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"
        for _ in range(2 * LIMIT // 2**14):
            yield bytes(2**14)
        yield b"\r\n--b--\r\n"
    streamed = client.post("/api/predict", content=chunks(),
                           headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert_one_line_error(streamed, 413, "over the")
    assert client.get("/api/health").status_code == 200


def test_malformed_requests_get_one_line_4xx(client, photo):
    assert_one_line_error(post(client, photo, field="image"), 422, "multipart/form-data field 'file'")
    assert_one_line_error(client.post("/api/predict", json={"file": "/etc/passwd"}), 422, "'file'")
    assert_one_line_error(client.post("/api/predict", data={"file": "/etc/passwd"}), 422)
    broken = client.post("/api/predict", content=b"--x\r\nnonsense",
                         headers={"Content-Type": "multipart/form-data; boundary=y"})
    assert_one_line_error(broken, (400, 422))
    assert client.get("/api/predict").status_code == 405


def test_fuzzed_images_never_get_a_500(client, photo):
    """Cut and corrupted JPEGs and PNGs: every answer is 200 or a one-line 422, and serving goes on."""
    rng = random.Random(0)
    png = encode(face_scene(seed=1, width=200, height=160, side=100), ".png")
    cases = []
    for data in (photo, png):
        cases += [data[:cut] for cut in sorted(rng.sample(range(1, len(data)), 12))]
        for _ in range(12):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 40)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            cases.append(bytes(mutated))
    for magic in (b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"BM", b"RIFF\0\0\0\0WEBP", b"II*\x00", b"MM\x00*"):
        cases += [magic + rng.randbytes(rng.randint(0, 300)) for _ in range(4)]
    for data in cases:
        response = post(client, data)
        assert response.status_code in (200, 422), (response.status_code, response.text)
        if response.status_code == 422:
            assert_one_line_error(response, 422)
    assert post(client, photo).status_code == 200


def test_static_files_are_served_by_name_only(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for probe in ("/static/../server.py", "/static/%2e%2e%2fserver.py", "/static/..%2F..%2Fpyproject.toml",
                  "/static/server.py", "/static/", "/etc/passwd", "/static/index.html%00.js"):
        assert client.get(probe).status_code == 404, probe


def test_the_page_needs_nothing_from_the_network():
    static = Path(__file__).resolve().parents[1] / "src" / "ferkit" / "serving" / "static"
    for path in static.iterdir():
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), path.name
    assert re.findall(r'(?:src|href)="([^"]+)"', (static / "index.html").read_text()) == [
        "/static/style.css", "/static/app.js", "/api/health", "/docs"]


def test_openapi_documents_the_api(client):
    schema = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/health"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("argv, words", [
    (["serve", "--port", "70000"], ["--port"]),
    (["serve", "--max-upload-mb", "0"], ["--max-upload-mb"]),
    (["serve", "--model", "no/such/model.pt"], ["no such model file"]),
    (["serve", "--workers", "0"], ["--workers", "at least 1"]),
    (["serve", "--workers", "-3"], ["--workers", "at least 1"]),
    # With workers the model is still loaded once before any starts, so a bad one fails the same way.
    (["serve", "--workers", "2", "--model", "no/such/model.pt"], ["no such model file"]),
])
def test_bad_options_are_one_line_usage_errors(argv, words, capfd):
    assert main(argv) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and all(word in err for word in words), err


def test_busy_port_is_a_one_line_error(checkpoint, capfd):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(checkpoint), "--port", str(port)]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "cannot listen" in err, err


def test_a_worker_that_cannot_load_the_model_stops_with_one_line(monkeypatch, capfd):
    """Were the model gone by the time a worker loads it: one line, and uvicorn's start-up failure
    status, on which the parent stops all workers instead of restarting that one forever."""
    from uvicorn.config import STARTUP_FAILURE

    settings = WorkerSettings("no/such/model.pt", "model.pt", LIMIT, default_detector(), threads=1)
    monkeypatch.setenv(WORKER_SETTINGS_VARIABLE, json.dumps(dataclasses.asdict(settings)))
    with pytest.raises(SystemExit) as stopped:
        worker_app()
    assert stopped.value.code == STARTUP_FAILURE
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "worker process" in err and "no such model file" in err, err


class Server:
    """`fer serve` in a child process on a free port; `url` once it answers."""

    def __init__(self, model: Path, *extra: str) -> None:
        # This checkout's code, installed or not, as benchmarks/common.py does.
        path = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        self.process = subprocess.Popen([sys.executable, "-m", "ferkit", "serve", "--model", str(model), "--port", "0",
                                         *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.line = line = self.process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not found:
            self.stop()
            raise AssertionError(f"fer serve did not start: {line}{self.process.stdout.read()}")
        self.port = int(found.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


STARTUP_S = 180  # the most a worker may take to load the model, on a machine busy with training
HEALTH_REQUEST = b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def raw_request(port: int, request: bytes, timeout: float = 20) -> tuple[int, bytes]:
    """Send bytes as they are (headers that lie included) and read the status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.slow
def test_the_command_serves_over_http(checkpoint, photo):
    server = Server(checkpoint, "--max-upload-mb", "1")
    try:
        boundary = b"fer-test"
        body = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\n"
                b"Content-Type: image/jpeg\r\n\r\n" + photo + b"\r\n--" + boundary + b"--\r\n")
        head = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n")
        status, answer = raw_request(server.port, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert status == 200 and len(json.loads(answer)["faces"]) == 1
        # A declared length over the limit is refused before a byte of the body is sent.
        status, answer = raw_request(server.port, head + b"Content-Length: 5000000000\r\n\r\n")
        assert status == 413 and "over the 1 MB limit" in json.loads(answer)["detail"]
        status, answer = raw_request(server.port, HEALTH_REQUEST)
        assert status == 200 and json.loads(answer)["classes"] == list(FER2013_CLASSES)
    finally:
        server.stop()


def worker_processes(pid: int) -> list[int]:
    """The uvicorn worker processes under `fer serve`'s process (multiprocessing's spawned children)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts the worker processes in /proc (Linux)")
def test_the_command_serves_with_two_worker_processes(checkpoint, photo):
    """`--workers 2` on port 0: the line names the workers, two worker processes run and answer
    with faces, and SIGTERM stops the parent and both workers, with status 0."""
    server = Server(checkpoint, "--workers", "2")
    assert "2 worker processes" in server.line, server.line
    try:
        # The port listens at once; the workers answer once they have loaded the model (slow on a
        # busy machine), and until then connections wait: hence the long timeouts.
        assert raw_request(server.port, HEALTH_REQUEST, timeout=STARTUP_S)[0] == 200
        boundary = b"fer-test"
        body = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\n"
                b"\r\n" + photo + b"\r\n--" + boundary + b"--\r\n")
        request = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                   b"Content-Type: multipart/form-data; boundary=" + boundary +
                   b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        for _ in range(2):
            status, answer = raw_request(server.port, request, timeout=STARTUP_S)
            assert status == 200, answer
            faces = json.loads(answer)["faces"]
            assert len(faces) == 1 and set(faces[0]["probabilities"]) == set(FER2013_CLASSES), faces
        workers = worker_processes(server.process.pid)
        assert len(workers) == 2, workers
    finally:
        server.stop()
    output = server.process.stdout.read()
    assert server.process.returncode == 0 and "Traceback" not in output, output
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "a worker outlived the server"


@pytest.mark.slow
def test_workers_that_cannot_start_stop_the_server_with_one_line_each(tmp_path):
    """The model deleted once the parent has loaded it (its line printed) and before the workers
    load it (they import torch first): each worker says why in one line, and the server stops with
    status 2 instead of starting them again and again."""
    model = write_untrained_checkpoint(tmp_path / "going.pt")
    server = Server(model, "--workers", "2")
    model.unlink()
    try:
        output, _ = server.process.communicate(timeout=STARTUP_S)
    finally:
        server.stop()
    assert server.process.returncode == 2, output
    assert output.count("no such model file") == 2 and "Traceback" not in output, output
    assert output.rstrip().endswith("fer: error: a worker process could not start (its error is above); "
                                    "the server stopped"), output

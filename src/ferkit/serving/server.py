"""`fer serve`: a web page and a JSON API that classify the faces in uploaded photos and webcam frames.

Each worker process loads the model once, as a `ferkit.Analyzer` (`--workers N`: N processes share one
listening socket, each with its own copy of the model); every request goes through that Analyzer.
`POST /api/predict` takes one image as the multipart field `file` and answers with that image's
entry of `fer predict --json` (width, height, and each face's box, emotion, score and
probabilities); `GET /api/health` names the model and the classes;
FastAPI documents the API at /docs. The page and its script are files inside this package, held
in memory and served by name from a fixed table, so no request names a path on disk and the page
needs nothing from the network.

Uploads are bytes: the format is sniffed from them (never from the file name), the header's size
is checked before decoding (`ferkit.imaging.decode_image`), and the body is counted as it arrives,
so an upload over the limit is refused with 413 without being stored whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import cv2
import numpy as np
from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ferkit.api.analyzer import Analyzer
from ferkit.api.results import class_colour, image_json
from ferkit.choices import PHOTO_MODEL, SHIPPED_MODELS, default_detector
from ferkit.emotions import IMAGE_SIZE
from ferkit.errors import FerError
from ferkit.imaging import BadImage, decode_image
from ferkit.inference.faces import Face

DEFAULT_MAX_UPLOAD_MB = 10.0
# Room for the multipart envelope (boundaries, part headers, a long file name) around the file
# itself, so that a file of exactly the limit is not refused for its wrapping.
ENVELOPE_BYTES = 64 * 1024
STATIC_DIR = Path(__file__).parent / "static"
# The only files the app serves: name in the URL -> content type. Nothing else is ever read.
STATIC_TYPES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page may load only what the app itself serves; camera frames and previews are blob: URLs.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class Prediction:
    width: int
    height: int
    faces: list[Face]


def predict_bytes(data: bytes, analyzer: Analyzer) -> Prediction:
    """The prediction path for one encoded image: decode (here, so that the answer can give the size and
    a bad upload its reason), then the Analyzer finds the faces and classifies them in one batch.
    Raises BadImage when the bytes are not a usable image."""
    image = decode_image(data)
    height, width = image.shape[:2]
    return Prediction(width, height, analyzer.analyze(image, channels="bgr"))


class UploadTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"upload is over the {format_megabytes(limit)} limit")


def format_megabytes(size: int) -> str:
    return f"{size / 2**20:g} MB"


class BodyLimit:
    """ASGI middleware: refuse a body over `limit` bytes with 413, by its Content-Length before
    reading, or, when the length is not declared (or lies), as soon as the bytes received pass it."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int, shown_limit: int) -> None:
        self.app, self.limit, self.shown_limit = app, limit, shown_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _send_json(send, 413, UploadTooLarge(self.shown_limit).detail)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                # An HTTPException passes through FastAPI's body parsing and becomes the response.
                raise UploadTooLarge(self.shown_limit)
            return message

        await self.app(scope, counted, send)


async def _send_json(send: Send, status: int, detail: str) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _one_line(error: RequestValidationError) -> str:
    """FastAPI's list of validation problems as one line; the usual one is a missing `file`."""
    problems = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()))
        if problem.get("type") == "missing" and where == "body.file":
            return "no image in the request: send it as the multipart/form-data field 'file'"
        problems.append(f"{where}: {problem.get('msg', 'invalid')}")
    return " ".join("; ".join(problems).split()) or "invalid request"


def _static_files() -> dict[str, bytes]:
    return {name: (STATIC_DIR / name).read_bytes() for name in STATIC_TYPES}


def model_label(model: str | os.PathLike) -> str:
    """What /api/health calls the model: a shipped model's name, or the file's name (not its folder)."""
    return str(model) if str(model) in SHIPPED_MODELS else Path(model).name


def create_app(analyzer: Analyzer, label: str, max_upload_bytes: int) -> FastAPI:
    """The app around a loaded Analyzer; `label` is the model's name in /api/health."""
    # One prediction at a time: torch and OpenCV already use every core given to this process for
    # one image, and a queue keeps the event loop free to answer the others.
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fer-predict")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Before the first request, on the thread that runs predictions.
        await asyncio.get_running_loop().run_in_executor(worker, _warm_up, analyzer)
        yield
        worker.shutdown(wait=True)

    app = FastAPI(title="fer serve", version="1", lifespan=lifespan,
                  description="Facial-emotion recognition: faces, boxes and the probability of each of "
                              f"{len(analyzer.classes)} emotions for one image per request.")
    app.add_middleware(BodyLimit, limit=max_upload_bytes + ENVELOPE_BYTES, shown_limit=max_upload_bytes)
    static = _static_files()
    health = {"status": "ok", "model": {"name": label, "architecture": analyzer.architecture, "kind": analyzer.kind,
                                        "temperature": analyzer.temperature},
              "classes": list(analyzer.classes),
              "colours": {name: "#{2:02x}{1:02x}{0:02x}".format(*class_colour(name)) for name in analyzer.classes},
              "detector": analyzer.detector, "face_size": IMAGE_SIZE,
              "max_upload_bytes": max_upload_bytes}

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Any, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _one_line(error)}, status_code=422)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return _static_response(static, "index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        if name not in static:
            raise HTTPException(404, f"no static file '{name[:80]}'")
        return _static_response(static, name)

    @app.get("/api/health", summary="the model and the classes it predicts")
    async def api_health() -> dict[str, Any]:
        return health

    @app.post("/api/predict", summary="the faces in one image, each with its emotion probabilities",
              responses={413: {"description": "the upload is over the size limit"},
                         422: {"description": "not a usable image (reason in `detail`), or no `file` field"}})
    async def api_predict(file: Annotated[UploadFile, File(description="a JPEG, PNG, BMP, WebP or TIFF image")]
                          ) -> JSONResponse:
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise UploadTooLarge(max_upload_bytes)
        start = time.perf_counter()
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                worker, predict_bytes, data, analyzer)
        except BadImage as problem:
            raise HTTPException(422, " ".join(str(problem).split())) from None
        body = image_json(result.width, result.height, result.faces)
        body["elapsed_ms"] = round((time.perf_counter() - start) * 1000, 1)
        return JSONResponse(body)

    return app


def _static_response(static: dict[str, bytes], name: str) -> Response:
    return Response(static[name], media_type=STATIC_TYPES[name],
                    headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache",
                             "X-Content-Type-Options": "nosniff"})


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, so that a busy port is a one-line error and port 0 picks a free one."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise FerError(f"--host {host}: cannot resolve ({error.strerror})") from None
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise FerError(f"{host}:{port}: cannot listen ({error.strerror or error})") from None
    sock.listen(128)
    return sock


def _warm_up(analyzer: Analyzer) -> None:
    """Run each step once on the thread that answers requests (the Analyzer warmed up the thread that
    made it), so that the first request does not pay for lazily built kernels, buffers and detector."""
    analyzer.warm_up()
    ok, blank = cv2.imencode(".jpg", np.full((480, 640, 3), 128, np.uint8))
    if ok:
        predict_bytes(blank.tobytes(), analyzer)


def _check_options(port: int, max_upload_mb: float, workers: int) -> int:
    """The upload limit in bytes; bad numbers are usage errors found before the model loads."""
    if not 0 <= port <= 65535:
        raise FerError(f"--port must be between 0 and 65535, got {port}")
    if not 0 < max_upload_mb <= 1024:
        raise FerError(f"--max-upload-mb must be above 0 and at most 1024, got {max_upload_mb:g}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise FerError(f"--workers must be a whole number of at least 1, got {workers}")
    return int(max_upload_mb * 2**20)


# With --workers, `run` passes the settings to the worker processes in this environment variable
# (JSON), and each worker's uvicorn imports `ferkit.serving.server:worker_app` and calls it. An import
# string, not a pickled function: a worker then imports torch after it has begun answering the
# parent's health checks, so a slow start on a busy machine is not taken for a hung worker.
WORKER_SETTINGS_VARIABLE = "FER_SERVE_WORKER_SETTINGS"
WORKER_APP = "ferkit.serving.server:worker_app"
# How long the parent waits for a worker's answer to a health check before replacing it (uvicorn's
# default is 5 s). A worker answers from a thread while its main thread imports torch and loads the
# model; the longest it then went without the GIL was 0.4 s (load average 3), so 10 s leaves room
# for a machine busy with training. It is also how long the parent takes to notice a worker that
# exited at start-up (its ping waits for the answer), hence not more.
WORKER_HEALTHCHECK_S = 10


@dataclass(frozen=True)
class WorkerSettings:
    """What each worker process needs to build its own app."""
    model: str
    label: str
    max_upload_bytes: int
    detector: str
    threads: int  # torch and OpenCV threads in each worker: the usable cores shared out


def worker_threads(workers: int) -> int:
    return max(1, len(os.sched_getaffinity(0)) // workers)


def worker_app() -> FastAPI:
    """The app factory that uvicorn calls in each worker process: load the model, build the app.
    A failure is one line and uvicorn's start-up failure status, so that the parent stops instead
    of starting the worker again and again."""
    from uvicorn.config import STARTUP_FAILURE

    try:
        import torch

        settings = WorkerSettings(**json.loads(os.environ[WORKER_SETTINGS_VARIABLE]))
        torch.set_num_threads(settings.threads)
        cv2.setNumThreads(settings.threads)
        return create_app(Analyzer(settings.model, settings.detector), settings.label, settings.max_upload_bytes)
    except Exception as error:  # the parent loaded the same model, so this is rare: say it and stop
        what = str(error) if isinstance(error, FerError) else f"{type(error).__name__}: {error}"
        print(f"fer: error: worker process {os.getpid()}: {' '.join(what.split())}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE)


def run(model: str | os.PathLike = PHOTO_MODEL, host: str = "127.0.0.1", port: int = 8000,
        max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, workers: int = 1) -> int:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    max_upload_bytes = _check_options(port, max_upload_mb, workers)
    detector = default_detector()
    # Loaded here whatever the number of workers, so that a bad model or a missing detector is one
    # line before anything listens; with workers, each then loads its own copy.
    analyzer = Analyzer(model, detector)
    label = model_label(model)
    app = create_app(analyzer, label, max_upload_bytes) if workers == 1 else None
    sock = listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    processes = "" if workers == 1 else f", {workers} worker processes"
    print(f"fer serve: {label} ({analyzer.architecture}, {analyzer.kind}{processes}) at http://{shown}:{bound_port}/ "
          f"(API docs at /docs; Ctrl+C stops)", flush=True)
    if app is not None:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
        server.run(sockets=[sock])
        return 0
    del analyzer
    # The socket is bound here (port 0 included) and handed to the workers, which all accept from
    # it; a keep-alive connection stays with the worker that accepted it.
    settings = WorkerSettings(str(model), label, max_upload_bytes, detector, worker_threads(workers))
    os.environ[WORKER_SETTINGS_VARIABLE] = json.dumps(asdict(settings))
    config = uvicorn.Config(WORKER_APP, factory=True, workers=workers, log_level="warning",
                            timeout_graceful_shutdown=5, timeout_worker_healthcheck=WORKER_HEALTHCHECK_S)
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise FerError("a worker process could not start (its error is above); the server stopped")
    return 0

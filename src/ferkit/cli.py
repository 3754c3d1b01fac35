"""The `fer` command: one thin subcommand per pipeline stage, plus predict, export and serve.

Stage modules are imported only when their subcommand runs, so `fer preprocess` does not pay
for importing torch. Every `FerError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ferkit.choices import (
    DETECTORS,
    LABELS,
    MODEL_NAMES,
    PHOTO_MODEL,
    SHIPPED_MODELS,
    SMOOTH_SECONDS,
    TTA_MODES,
    default_detector,
)
from ferkit.errors import FerError
from ferkit.layout import DATA_DIR
from ferkit.params import DEFAULT_PARAMS

# The module each subcommand runs; imported only when that subcommand runs.
COMMAND_MODULES: dict[str, str] = {
    "synth": "ferkit.data.synth",
    "preprocess": "ferkit.data.preprocess",
    "train": "ferkit.training.train",
    "evaluate": "ferkit.evaluation.evaluate",
    "evaluate --data": "ferkit.evaluation.transfer",
    "calibrate": "ferkit.evaluation.calibration",
    "predict": "ferkit.serving.predict",
    "export": "ferkit.serving.export",
    "serve": "ferkit.serving.server",
}


def _run_module(command: str, **options: Any) -> int:
    """Call the subcommand's module's `run`; its exit status is its return value, or 0."""
    status = importlib.import_module(COMMAND_MODULES[command]).run(**options)
    return status if isinstance(status, int) else 0


def _synth(args: argparse.Namespace) -> int:
    return _run_module("synth", params_path=args.params, out=args.out, grid=args.grid)


def _preprocess(args: argparse.Namespace) -> int:
    return _run_module("preprocess", params_path=args.params, source=args.source, out=args.out, labels=args.labels,
                       ferplus_votes=args.ferplus_votes)


def _train(args: argparse.Namespace) -> int:
    return _run_module("train", name=args.model, params_path=args.params)


# `fer predict` and `fer serve` default to the model that reads real photos best (ferkit.choices.PHOTO_MODEL).
PHOTO_MODEL_HELP = (f"a shipped model ({', '.join(SHIPPED_MODELS)}; default {PHOTO_MODEL}: FER+'s eight classes), "
                    "a .pt checkpoint or an .onnx model")

# `fer evaluate`'s options that act in one mode only: with --data (any model on any data), or
# without it (the pipeline's models). Their defaults are None, so that "given" can be told apart.
EVALUATE_DATA_ONLY = ("model", "split", "json", "tta", "ferplus_votes")
EVALUATE_PIPELINE_ONLY = ("models", "params")


def _evaluate(args: argparse.Namespace) -> int:
    with_data = args.data is not None
    for name in EVALUATE_PIPELINE_ONLY if with_data else EVALUATE_DATA_ONLY:
        if getattr(args, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise FerError(f"{flag} has no effect with --data" if with_data else f"{flag} applies only with --data")
    if with_data:
        return _run_module("evaluate --data", data=args.data, models=args.model or [SHIPPED_MODELS[0]],
                           split=args.split, json_out=args.json, tta=args.tta or TTA_MODES[0],
                           ferplus_votes=args.ferplus_votes)
    return _run_module("evaluate", params_path=args.params or DEFAULT_PARAMS, models=args.models or list(MODEL_NAMES))


def _calibrate(args: argparse.Namespace) -> int:
    return _run_module("calibrate", checkpoints=args.checkpoints, out=args.out, data_dir=args.data, half=args.half)


def _predict(args: argparse.Namespace) -> int:
    return _run_module("predict", paths=args.paths, model=args.model, detector=args.detector, json_out=args.json,
                       csv_out=args.csv, annotate=args.annotate, plot=args.plot, tta=args.tta,
                       batch_size=args.batch_size, every=args.every, smooth=args.smooth, quiet=args.quiet)


def _export(args: argparse.Namespace) -> int:
    return _run_module("export", model=args.model, onnx_path=args.onnx)


def _serve(args: argparse.Namespace) -> int:
    return _run_module("serve", model=args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
                       workers=args.workers)


def build_parser() -> argparse.ArgumentParser:
    from ferkit import __version__

    parser = argparse.ArgumentParser(prog="fer", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, help_text: str, params: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        if params:
            sub.add_argument("--params", type=Path, default=DEFAULT_PARAMS,
                             help="parameters file (default: params.yaml)")
        return sub

    synth = command("synth", _synth, "write the embedded synthetic dataset in the Kaggle CSV layout")
    synth.add_argument("--out", type=Path, help="CSV to write (default: data/synthetic/fer2013.csv)")
    synth.add_argument("--grid", type=Path, help="also save a PNG grid of samples per class")

    pre = command("preprocess", _preprocess, "turn a FER-2013 CSV or image folder into split .npy arrays",
                  params=False)
    pre.add_argument("--params", type=Path, help="parameters file (default: params.yaml; outside a project folder, "
                     "with --source and --out, none is needed)")
    pre.add_argument("--source", help="CSV, CSV.GZ or image folder (overrides data.source)")
    pre.add_argument("--out", type=Path, help="output folder; the data report goes there too")
    pre.add_argument("--labels", choices=LABELS, help="label set (overrides data.labels)")
    pre.add_argument("--ferplus-votes", metavar="CSV", help="FER+ votes file (overrides data.ferplus_votes)")

    train = command("train", _train, "train one model and write its checkpoints, curves and metrics")
    train.add_argument("model", choices=MODEL_NAMES)

    evaluate = command("evaluate", _evaluate, "score each best.pt on valid and test, write metrics and plots; "
                       "with --data, score one model on any labelled data", params=False)
    evaluate.add_argument("--params", type=Path, help="without --data: parameters file (default: params.yaml)")
    evaluate.add_argument("--models", nargs="+", choices=MODEL_NAMES,
                          help=f"without --data: the pipeline's models to score (default: {' '.join(MODEL_NAMES)})")
    evaluate.add_argument("--data", type=Path, metavar="PATH",
                          help="a FER-2013 CSV (.csv or .csv.gz), an image folder (train/ and test/) or a folder of "
                          "class folders (angry/ or anger/, happy/ or happiness/, ...)")
    evaluate.add_argument("--model", nargs="+", metavar="M",
                          help=f"with --data: a shipped model ({', '.join(SHIPPED_MODELS)}; default: "
                          f"{SHIPPED_MODELS[0]}), checkpoint or .onnx; several make an ensemble that averages their "
                          "probabilities")
    evaluate.add_argument("--split", help="with --data CSV or image folder: only the rows of this split "
                          "(PrivateTest, PublicTest, ...)")
    evaluate.add_argument("--json", metavar="FILE", help="with --data: also write the results as JSON")
    evaluate.add_argument("--tta", choices=TTA_MODES,
                          help=f"with --data: test-time augmentation (default: {TTA_MODES[0]})")
    evaluate.add_argument("--ferplus-votes", metavar="CSV", help="with --data CSV and a FER+ model: the FER+ votes "
                          "file, whose majority labels are scored")

    calibrate = command("calibrate", _calibrate, "fit a temperature on PublicTest and store it with the weights",
                        params=False)
    calibrate.add_argument("checkpoints", nargs="+", type=Path, metavar="CHECKPOINT",
                           help="a checkpoint such as models/vgg/best.pt; several networks of one shape make one "
                           "ensemble file that averages their probabilities (their own temperatures are dropped)")
    calibrate.add_argument("--out", type=Path, required=True, help="the calibrated checkpoint to write")
    calibrate.add_argument("--data", type=Path, default=DATA_DIR, help="folder of the split arrays (valid_* is used)")
    calibrate.add_argument("--half", action="store_true", help="store the weights as float16 (half the size)")

    predict = command("predict", _predict, "classify the faces in images, videos or folders", params=False)
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image or video files, or folders (recursive)")
    predict.add_argument("--model", default=PHOTO_MODEL, help=PHOTO_MODEL_HELP)
    predict.add_argument("--detector", choices=DETECTORS, default=default_detector(),
                         help=f"default: {default_detector()} (yunet where its wheel installs, else hog); "
                         "'none' treats each image as one pre-cropped face")
    predict.add_argument("--json", metavar="FILE", help="write JSON results to FILE, or '-' for stdout "
                         "(for a video: its size, fps and a summary of each face track)")
    predict.add_argument("--csv", metavar="FILE", help="write one row per face per analysed frame to FILE")
    predict.add_argument("--annotate", type=Path, metavar="DIR", help="write copies with boxes and labels "
                         "(a video as DIR/<name>.mp4)")
    predict.add_argument("--plot", type=Path, metavar="DIR", help="for a video: DIR/<name>.png, each face track's "
                         "probabilities over time")
    predict.add_argument("--every", type=int, metavar="N", help="video: analyse one frame in N (default: 1)")
    predict.add_argument("--smooth", type=float, metavar="SECONDS",
                         help=f"video: average each track's probabilities over this long (default: {SMOOTH_SECONDS}; "
                         "0: off)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--tta", choices=TTA_MODES, default="none")
    predict.add_argument("--batch-size", type=int, default=256)

    export = command("export", _export, "export a checkpoint to ONNX with a dynamic batch size", params=False)
    export.add_argument("--model", default=SHIPPED_MODELS[0], help="a shipped model's name or a checkpoint")
    export.add_argument("--onnx", required=True, type=Path, help="ONNX file to write")

    serve = command("serve", _serve, "serve a web page and a JSON API that classify faces in photos and webcam frames",
                    params=False)
    serve.add_argument("--model", default=PHOTO_MODEL, help=PHOTO_MODEL_HELP)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    serve.add_argument("--max-upload-mb", type=float, default=10.0, metavar="MB",
                       help="larger uploads get 413 (default: 10)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="uvicorn worker processes, each with its own copy of the model (default: 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except FerError as error:
        print(f"fer: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # before OSError, its base class
        # `fer predict ... | head` closed the pipe early; that is the reader's choice, not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as error:  # disk full, permissions, a folder where a file should be...
        where = f"{error.filename}: " if error.filename else ""
        print(f"fer: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fer: interrupted", file=sys.stderr)
        return 130

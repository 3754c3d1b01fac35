"""The `fer` command: one thin subcommand per pipeline stage, plus predict and export.

Stage modules are imported only when their subcommand runs, so `fer preprocess` does not pay
for importing torch. Every `FerError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fer.errors import FerError
from fer.params import DEFAULT_PARAMS, MODEL_NAMES


def _synth(args: argparse.Namespace) -> int:
    from fer import synth

    synth.run(params_path=args.params, out=args.out, grid=args.grid)
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from fer import preprocess

    preprocess.run(params_path=args.params, source=args.source, out=args.out)
    return 0


def _train(args: argparse.Namespace) -> int:
    from fer import train

    train.run(args.model, params_path=args.params)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from fer import evaluate

    evaluate.run(params_path=args.params, models=args.models)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from fer import predict

    return predict.run(
        paths=args.paths, model=args.model, detector=args.detector, json_out=args.json,
        annotate=args.annotate, tta=args.tta, batch_size=args.batch_size,
    )


def _export(args: argparse.Namespace) -> int:
    from fer import export

    export.run(model=args.model, onnx_path=args.onnx)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer", description=__doc__.splitlines()[0])
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

    pre = command("preprocess", _preprocess, "turn a FER-2013 CSV or image folder into split .npy arrays")
    pre.add_argument("--source", help="CSV, CSV.GZ or image folder (overrides data.source)")
    pre.add_argument("--out", type=Path, help="output folder; the data report goes there too")

    train = command("train", _train, "train one model and write its checkpoints, curves and metrics")
    train.add_argument("model", choices=MODEL_NAMES)

    evaluate = command("evaluate", _evaluate, "score each best.pt on valid and test, write metrics and plots")
    evaluate.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))

    predict = command("predict", _predict, "classify the faces in images or folders", params=False)
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (recursive)")
    predict.add_argument("--model", default="models/vgg/best.pt", help="a .pt checkpoint or an .onnx model")
    predict.add_argument("--detector", choices=("haar", "none"), default="haar",
                         help="'none' treats each image as one pre-cropped face")
    predict.add_argument("--json", metavar="FILE", help="write JSON results to FILE, or '-' for stdout")
    predict.add_argument("--annotate", type=Path, metavar="DIR", help="write copies with boxes and labels")
    predict.add_argument("--tta", choices=("none", "flip", "tencrop"), default="none")
    predict.add_argument("--batch-size", type=int, default=256)

    export = command("export", _export, "export a checkpoint to ONNX with a dynamic batch size", params=False)
    export.add_argument("--model", default="models/vgg/best.pt", help="checkpoint to export")
    export.add_argument("--onnx", required=True, type=Path, help="ONNX file to write")
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

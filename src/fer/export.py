"""Export a checkpoint to ONNX, and load such a file back as a logits function for `fer predict`.

The ONNX graph takes normalised input, exactly like the torch model, so the training mean and std
travel in the file's metadata and `fer.inference.predict_proba` normalises both kinds the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer.atomic import atomic_path
from fer.checkpoint import load_checkpoint, model_from_checkpoint
from fer.emotions import EMOTIONS, IMAGE_SIZE
from fer.errors import FerError

ONNX_FORMAT = "fer-onnx/1"
INPUT_NAME = "faces"
OUTPUT_NAME = "logits"
# The exporter traces with a batch of this size; the batch axis is then made dynamic. Not 1,
# which torch.export would specialise as a constant.
TRACE_BATCH = 2


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs notes (e.g. 'torchvision is not installed') and deprecation warnings
    that say nothing about this model; keep `fer export` output to its one result line."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def to_onnx(model: nn.Module) -> Any:
    """The model as an onnx.ModelProto with input (N,1,48,48) and output (N,7), N dynamic."""
    try:
        import onnxscript  # noqa: F401  (the exporter needs it; fail here with a clear message)
    except ImportError:
        raise FerError("ONNX export needs the onnx and onnxscript packages (pip install -r requirements.txt)") from None
    example = torch.zeros(TRACE_BATCH, 1, IMAGE_SIZE, IMAGE_SIZE)
    with _quiet_exporter():
        program = torch.onnx.export(
            model.eval(), (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, dynamo=True, verbose=False,
        )
        program.optimize()
    return program.model_proto


def metadata(checkpoint: dict[str, Any], source: str) -> dict[str, str]:
    """What predict needs besides the graph: how to normalise, and what the outputs mean."""
    return {
        "fer_format": ONNX_FORMAT,
        "model": str(checkpoint["model"]),
        "mean": repr(float(checkpoint["mean"])),
        "std": repr(float(checkpoint["std"])),
        "classes": json.dumps(list(EMOTIONS)),
        "source_checkpoint": source,
    }


def run(model: str | os.PathLike, onnx_path: str | os.PathLike) -> None:
    checkpoint = load_checkpoint(model)
    network = model_from_checkpoint(checkpoint, source=str(model))
    proto = to_onnx(network)
    for key, value in metadata(checkpoint, str(model)).items():
        proto.metadata_props.add(key=key, value=value)
    import onnx

    try:
        with atomic_path(onnx_path) as tmp:
            onnx.save_model(proto, str(tmp))
    except OSError as error:
        raise FerError(f"{onnx_path}: cannot write ({error.strerror or error})") from None
    print(f"wrote {onnx_path} ({checkpoint['model']}, input {INPUT_NAME} (N,1,{IMAGE_SIZE},{IMAGE_SIZE}), "
          f"output {OUTPUT_NAME} (N,{len(EMOTIONS)}))")


@dataclass(frozen=True)
class OnnxModel:
    """An ONNX Runtime session as a callable from a float (B,1,48,48) tensor to (B,7) logits."""

    session: Any
    name: str
    mean: float
    std: float

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])


def _read_metadata(path: Path, props: dict[str, str]) -> tuple[str, float, float]:
    if props.get("fer_format") != ONNX_FORMAT:
        raise FerError(f"{path}: ONNX model lacks fer metadata (make it with `fer export --onnx`)")
    try:
        classes = json.loads(props["classes"])
        name, mean, std = props["model"], float(props["mean"]), float(props["std"])
    except (KeyError, ValueError) as error:
        raise FerError(f"{path}: bad fer metadata in ONNX model ({error})") from None
    if classes != list(EMOTIONS):
        raise FerError(f"{path}: ONNX model classes {classes} differ from {list(EMOTIONS)}")
    return name, mean, std


def load_onnx(path: str | os.PathLike) -> OnnxModel:
    """Open an exported model on the CPU with ONNX Runtime."""
    path = Path(path)
    if not path.is_file():
        raise FerError(f"{path}: ONNX model does not exist")
    try:
        import onnxruntime
    except ImportError:
        raise FerError(f"{path}: running ONNX models needs onnxruntime (pip install -r requirements.txt)") from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FerError(f"{path}: not a readable ONNX model ({reason[:160]})") from None
    name, mean, std = _read_metadata(path, session.get_modelmeta().custom_metadata_map)
    return OnnxModel(session=session, name=name, mean=mean, std=std)

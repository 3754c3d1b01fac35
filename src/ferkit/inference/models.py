"""Any trained model, by a shipped model's name, a fer checkpoint or an exported ONNX file, as one
callable classifier.

`fer predict` and `fer evaluate --data` load models only through here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ferkit.errors import FerError, first_line
from ferkit.inference.proba import predict_proba_at
from ferkit.models.checkpoint import CheckpointHeader, load_checkpoint, model_from_checkpoint
from ferkit.pretrained import PRETRAINED_DIR, model_file  # noqa: F401 (PRETRAINED_DIR: imported from here)

ONNX_FORMAT = "fer-onnx/1"
INPUT_NAME = "faces"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class Classifier:
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor]
    name: str       # the architecture, "basic" or "vgg"
    mean: float
    std: float
    kind: str       # "checkpoint" or "onnx"
    classes: tuple[str, ...]  # what each output means, from the checkpoint or the ONNX metadata
    temperature: float = 1.0  # divides the logits; fitted by `fer calibrate`
    # One batch at a time: predict_proba moves the network to its device and memory format on every
    # call, which must not happen while another thread's batch runs through it (ferkit.Analyzer is shared
    # across threads). torch already spreads one batch over the cores, so little is lost.
    lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, model: nn.Module | Callable[[torch.Tensor], torch.Tensor], header: CheckpointHeader,
           kind: str) -> Classifier:
        return cls(model, header.model, header.mean, header.std, kind, header.classes, header.temperature)

    def predict_proba(self, faces: np.ndarray, tta: str = "none", batch_size: int = 256) -> np.ndarray:
        """Calibrated class probabilities (N, classes) for uint8 faces (N, 48, 48)."""
        return self.predict_proba_at(faces, (self.temperature,), tta, batch_size)[0]

    def predict_proba_at(self, faces: np.ndarray, temperatures: Sequence[float], tta: str = "none",
                         batch_size: int = 256) -> list[np.ndarray]:
        """The class probabilities at each of `temperatures` (the calibrated ones at self.temperature),
        from one pass of the network."""
        with self.lock:
            return predict_proba_at(self.model, faces, self.mean, self.std, temperatures, tta=tta,
                                    batch_size=batch_size)


@dataclass(frozen=True)
class OnnxModel:
    """An ONNX Runtime session as a callable from a float (B,1,48,48) tensor to (B,classes) logits."""

    session: Any
    header: CheckpointHeader  # from the file's metadata

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if not len(batch):
            return torch.zeros((0, len(self.header.classes)))
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])


def _read_metadata(path: Path, props: dict[str, str]) -> CheckpointHeader:
    if props.get("fer_format") != ONNX_FORMAT:
        raise FerError(f"{path}: ONNX model lacks fer metadata (make it with `fer export --onnx`)")
    return CheckpointHeader.from_metadata(props, str(path))


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
        raise FerError(f"{path}: not a readable ONNX model ({first_line(error)})") from None
    return OnnxModel(session, _read_metadata(path, session.get_modelmeta().custom_metadata_map))


def load_classifier(model: str | os.PathLike) -> Classifier:
    """A shipped model by name; a .onnx file runs on ONNX Runtime; any other file is read as a checkpoint."""
    path = model_file(model)
    if path.suffix.lower() == ".onnx":
        onnx_model = load_onnx(path)
        return Classifier.of(onnx_model, onnx_model.header, "onnx")
    checkpoint = load_checkpoint(path)
    return Classifier.of(model_from_checkpoint(checkpoint, source=str(path)), checkpoint.header, "checkpoint")

"""`fer export --onnx`: a checkpoint as an ONNX graph with a dynamic batch size.

The graph takes normalised input, exactly like the torch model, so the training mean and std
travel in the file's metadata; `ferkit.inference.models` reads them back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ferkit.atomic import atomic_path
from ferkit.emotions import IMAGE_SIZE
from ferkit.errors import FerError
from ferkit.inference.models import INPUT_NAME, ONNX_FORMAT, OUTPUT_NAME, model_file
from ferkit.models.checkpoint import CheckpointHeader, load_checkpoint, model_from_checkpoint

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
    """The model as an onnx.ModelProto with input (N,1,48,48) and output (N,classes), N dynamic."""
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


def metadata(header: CheckpointHeader, source: str) -> dict[str, str]:
    """What predict needs besides the graph: how to normalise, and what the outputs mean."""
    return {"fer_format": ONNX_FORMAT, **header.to_metadata(), "source_checkpoint": source}


def run(model: str | os.PathLike, onnx_path: str | os.PathLike) -> None:
    model = model_file(model)
    checkpoint = load_checkpoint(model)
    network = model_from_checkpoint(checkpoint, source=str(model))
    proto = to_onnx(network)
    header = checkpoint.header
    for key, value in metadata(header, str(model)).items():
        proto.metadata_props.add(key=key, value=value)
    import onnx

    with atomic_path(onnx_path) as tmp:
        onnx.save_model(proto, str(tmp))
    print(f"wrote {onnx_path} ({header.model}, input {INPUT_NAME} (N,1,{IMAGE_SIZE},{IMAGE_SIZE}), "
          f"output {OUTPUT_NAME} (N,{len(header.classes)}): {', '.join(header.classes)})")

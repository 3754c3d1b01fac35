"""Checkpoints: a typed header, the weights, and training's own extras.

On disk a checkpoint is one dict of tensors and plain data, so it loads with
`torch.load(weights_only=True)`: the format tag, the header's fields as keys, `state_dict`, and
whatever training adds to resume (its parameters, fingerprint, optimiser state...). This module
alone turns the header into keys and back; the defaults for the keys that older checkpoints lack
are the dataclass's own. The ONNX metadata of an exported model carries the same header.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ferkit.atomic import atomic_path
from ferkit.choices import MODEL_NAMES
from ferkit.emotions import FER2013_CLASSES
from ferkit.errors import FerError, first_line
from ferkit.models.networks import build_model

FORMAT = "fer-checkpoint/1"
REQUIRED_KEYS = ("format", "model", "dropout", "state_dict", "mean", "std")
_NUMBERS = ("mean", "std", "dropout", "width", "temperature")


@dataclass(frozen=True)
class CheckpointHeader:
    """What a checkpoint says about its weights: which network, trained on what, normalised and
    calibrated how."""

    model: str  # the architecture, one of MODEL_NAMES
    mean: float  # the training split's pixel mean and std on the [0, 1] scale (ferkit.models.inputs)
    std: float
    dropout: float = 0.0
    width: float = 1.0  # the network's channel multiplier
    classes: tuple[str, ...] = FER2013_CLASSES  # what each output means; older checkpoints are all FER-2013's
    labels: str | None = None  # the label set's name (fer2013, ferplus); None where not recorded
    temperature: float = 1.0  # divides the logits; fitted by `fer calibrate`
    epoch: int | None = None  # the training epoch the weights come from
    val_acc: float | None = None  # validation accuracy at that epoch (best.pt)
    calibrated_on: str | None = None  # the data `fer calibrate` fitted the temperature on
    members: int = 1  # networks of this shape whose probabilities are averaged (an ensemble when > 1)

    def to_dict(self) -> dict[str, Any]:
        """The stored keys: every field that has a value, the classes as a list."""
        stored = {name: getattr(self, name) for name in HEADER_KEYS}
        stored["classes"] = list(self.classes)
        return {key: value for key, value in stored.items() if value is not None}

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any], source: str) -> CheckpointHeader:
        """The header of a stored checkpoint; a missing key takes its default, a bad value is a FerError."""
        values = {key: stored[key] for key in HEADER_KEYS if key in stored}
        if values.get("model") not in MODEL_NAMES:
            raise FerError(f"{source}: checkpoint is for unknown model '{values.get('model')}'")
        for key in _NUMBERS:
            if key in values:
                if isinstance(values[key], bool) or not isinstance(values[key], (int, float)):
                    raise FerError(f"{source}: checkpoint's '{key}' is not a number ({str(values[key])[:40]})")
                values[key] = float(values[key])
        members = values.get("members", 1)
        if isinstance(members, bool) or not isinstance(members, int) or members < 1:
            raise FerError(f"{source}: checkpoint's 'members' is not a positive whole number ({str(members)[:40]})")
        if "classes" in values:
            classes = values["classes"]
            if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(c, str) for c in classes):
                raise FerError(f"{source}: checkpoint's 'classes' is not a list of class names")
            values["classes"] = tuple(classes)
        else:  # from before label sets: FER-2013's
            values.setdefault("labels", "fer2013")
        return cls(**values)

    def to_metadata(self) -> dict[str, str]:
        """The header as the string pairs of an ONNX file's metadata (what running the graph needs)."""
        return {"model": self.model, "mean": repr(self.mean), "std": repr(self.std),
                "temperature": repr(self.temperature), "classes": json.dumps(list(self.classes))}

    @classmethod
    def from_metadata(cls, props: Mapping[str, str], source: str) -> CheckpointHeader:
        """The header of an exported ONNX model's metadata (see `to_metadata`)."""
        try:
            classes = json.loads(props["classes"])
            values: dict[str, Any] = {"model": props["model"], "mean": float(props["mean"]), "std": float(props["std"])}
            if "temperature" in props:
                values["temperature"] = float(props["temperature"])
        except (KeyError, ValueError) as error:
            raise FerError(f"{source}: bad fer metadata in ONNX model ({error})") from None
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise FerError(f"{source}: bad fer metadata in ONNX model (classes {str(classes)[:60]} is not a list "
                           "of names)")
        return cls(**values, classes=tuple(classes))


HEADER_KEYS = tuple(item.name for item in fields(CheckpointHeader))


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded checkpoint: the header, the weights, and the other stored entries."""

    header: CheckpointHeader
    state_dict: dict[str, torch.Tensor]
    # training's own entries: its parameters and fingerprint, and last.pt's resume state
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = sorted(set(self.extra) & {*HEADER_KEYS, "format", "state_dict"})
        if clash:
            raise ValueError(f"'{clash[0]}' is a header key, not an extra")

    def to_dict(self) -> dict[str, Any]:
        """The dict that is stored."""
        return {"format": FORMAT, **self.header.to_dict(), "state_dict": self.state_dict, **self.extra}

    def __getitem__(self, key: str) -> Any:
        """A stored entry by its key, as in the file (for scripts and tests that look one up)."""
        return self.to_dict()[key]

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any], source: str) -> Checkpoint:
        missing = [key for key in REQUIRED_KEYS if key not in stored]
        if missing:
            raise FerError(f"{source}: checkpoint lacks '{missing[0]}'")
        extra = {key: value for key, value in stored.items() if key not in {*HEADER_KEYS, "format", "state_dict"}}
        return cls(CheckpointHeader.from_dict(stored, source), stored["state_dict"], extra)


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint | Mapping[str, Any]) -> None:
    """Write atomically: a run killed mid-save keeps the previous checkpoint intact. A plain dict is
    checked as a loaded one would be, and stored in the same form."""
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint.from_dict({"format": FORMAT, **checkpoint}, str(path))
    with atomic_path(path) as tmp:
        torch.save(checkpoint.to_dict(), tmp)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise FerError(f"{path}: checkpoint does not exist")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or corrupt files
        raise FerError(f"{path}: not a readable fer checkpoint ({first_line(error)})") from None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        raise FerError(f"{path}: not a fer checkpoint (expected format '{FORMAT}')")
    return Checkpoint.from_dict(stored, str(path))


# What the members of an ensemble must share: one network shape, one class set, one normalisation.
_SHARED_BY_MEMBERS = ("model", "width", "dropout", "classes", "labels", "mean", "std")


def ensemble_of(checkpoints: Sequence[Checkpoint], sources: Sequence[str]) -> Checkpoint:
    """One checkpoint that averages the probabilities of single networks of the same shape, trained
    on the same data. Their temperatures are not kept: calibrate the ensemble as a whole."""
    first = checkpoints[0].header
    for checkpoint, source in zip(checkpoints, sources, strict=True):
        header = checkpoint.header
        if header.members != 1:
            raise FerError(f"{source}: already an ensemble of {header.members}; give its members instead")
        for key in _SHARED_BY_MEMBERS:
            if getattr(header, key) != getattr(first, key):
                raise FerError(f"{source}: its {key} ({getattr(header, key)}) is not {sources[0]}'s "
                               f"({getattr(first, key)}); an ensemble's members must share {key}")
    weights = {f"members.{index}.{key}": value for index, checkpoint in enumerate(checkpoints)
               for key, value in checkpoint.state_dict.items()}
    shared = {key: getattr(first, key) for key in _SHARED_BY_MEMBERS}
    return Checkpoint(CheckpointHeader(**shared, members=len(checkpoints)), weights)


def member_of(checkpoint: Checkpoint, index: int, source: str) -> Checkpoint:
    """Member `index` of an ensemble as a single network's checkpoint (a single network is its own member 0)."""
    header = checkpoint.header
    if index >= header.members:
        raise FerError(f"{source}: has {header.members} member(s); there is no member {index}")
    if header.members == 1:
        return checkpoint
    prefix = f"members.{index}."
    weights = {key[len(prefix):]: value for key, value in checkpoint.state_dict.items() if key.startswith(prefix)}
    return Checkpoint(replace(header, members=1, temperature=1.0), weights)


def check_classes(header: CheckpointHeader, classes: Sequence[str], source: str, advice: str) -> None:
    """Refuse to score or calibrate a model on data of another label set."""
    if header.classes != tuple(classes):
        raise FerError(f"{source}: trained on classes {', '.join(header.classes)}, but the data's are "
                       f"{', '.join(classes)}: {advice}")


def model_from_checkpoint(checkpoint: Checkpoint, source: str = "checkpoint") -> nn.Module:
    """Rebuild the network in eval mode from a loaded checkpoint."""
    header = checkpoint.header
    model = build_model(header.model, len(header.classes), dropout=header.dropout, width=header.width,
                        members=header.members)
    try:
        model.load_state_dict(checkpoint.state_dict)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise FerError(f"{source}: weights do not fit model '{header.model}' ({first[:160]})") from None
    return model.eval()

"""Read `params.yaml` and check every value before any work starts.

Each stage reads only its own blocks. A model's block (`basic:` or `vgg:`) may override any key
of the shared `train:` block, so `dvc exp run -S train.lr=0.02` changes both models and
`-S basic.lr=0.02` only the basic one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ferkit.choices import (
    CROPS,
    DEVICES,
    LABELS,
    MIXES,
    MODEL_NAMES,
    PRECISIONS,
    SCHEDULES,
    TARGETS,
    TTA_MODES,
    check_choice,
)
from ferkit.errors import FerError
from ferkit.layout import SYNTHETIC_VOTES

DEFAULT_PARAMS = Path("params.yaml")

Check = Callable[[Any], str | None]  # returns what is wrong, or None


def _integer(low: int, high: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {value!r}"
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"from {low} to {high}"
            return f"must be an integer {bound}, got {value}"
        return None

    return check


def _number(low: float, high: float | None = None, low_inclusive: bool = True) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        too_low = value < low if low_inclusive else value <= low
        if too_low or (high is not None and value > high):
            lower = f">= {low}" if low_inclusive else f"> {low}"
            bound = lower if high is None else f"{lower} and <= {high}"
            return f"must be a number {bound}, got {value}"
        return None

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        return None if value in options else f"must be one of {', '.join(options)}; got {value!r}"

    return check


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else f"must be a non-empty string, got {value!r}"


AUGMENT_SCHEMA: dict[str, Any] = {
    "crop": _choice(CROPS),
    "crop_padding": _integer(0, 16),
    "resized_scale_min": _number(0.0, 1.0, low_inclusive=False),
    "flip": _boolean,
    "rotate_degrees": _number(0.0, 90.0),
    "translate": _number(0.0, 0.5),
    "erase_prob": _number(0.0, 1.0),
    # Photo augmentations (ferkit.training.loader.degrade_batch); 0 turns each off.
    "scale": _number(0.0, 1.0),
    "brightness": _number(0.0, 1.0),
    "contrast": _number(0.0, 4.0),
    "gamma": _number(0.0, 2.0),
    "blur_prob": _number(0.0, 1.0),
    "low_res_prob": _number(0.0, 1.0),
    "jpeg_prob": _number(0.0, 1.0),
}
# Augmentations added after parameter files were in use: an `augment:` block without them has them off.
AUGMENT_DEFAULTS: dict[str, Any] = {"scale": 0.0, "brightness": 0.0, "contrast": 0.0, "gamma": 0.0,
                                    "blur_prob": 0.0, "low_res_prob": 0.0, "jpeg_prob": 0.0}

TRAIN_SCHEMA: dict[str, Any] = {
    "epochs": _integer(1),
    "batch_size": _integer(1),
    "lr": _number(0.0, low_inclusive=False),
    "momentum": _number(0.0, 1.0),
    "nesterov": _boolean,
    "weight_decay": _number(0.0),
    "gamma": _number(0.0, 1.0, low_inclusive=False),
    "schedule": _choice(SCHEDULES),
    "warmup_epochs": _number(0.0),
    "label_smoothing": _number(0.0, 0.5),
    "targets": _choice(TARGETS),
    "ema_decay": _number(0.0, 1.0),
    "mix": _choice(MIXES),
    "mix_alpha": _number(0.0, 10.0, low_inclusive=False),
    "seed": _integer(0),
    "device": _choice(DEVICES),
    "precision": _choice(PRECISIONS),
    "channels_last": _boolean,
    "compile": _boolean,
    "threads": _integer(0),
    "eval_batch_size": _integer(1),
    "processes": _integer(1),
    "sync_batchnorm": _boolean,
    # Fine-tuning: start from this checkpoint's weights (a .pt file or a shipped model's name; for an
    # ensemble, its member `init_member`) instead of random ones; "none" trains from scratch.
    "init": _text,
    "init_member": _integer(0),
    "augment": AUGMENT_SCHEMA,
}

# Keys added after parameter files were in use: a `train:` block without them takes these values.
TRAIN_DEFAULTS: dict[str, Any] = {"processes": 1, "sync_batchnorm": False, "targets": "majority", "mix": "none",
                                  "mix_alpha": 1.0, "init": "none", "init_member": 0}
DATA_DEFAULTS: dict[str, Any] = {"labels": "fer2013", "ferplus_votes": str(SYNTHETIC_VOTES)}
# The data block where there is no params.yaml (`fer preprocess --source S --out O` outside a project
# folder; `fer evaluate --data` on an image folder): the committed params.yaml's values, without a
# votes file (FER+ labels then need --ferplus-votes).
DATA_CODE_DEFAULTS: dict[str, Any] = {"labels": "fer2013", "valid_fraction": 0.1, "seed": 0}

# Keys that only make sense per model; everything else is inherited from `train:`.
MODEL_ONLY_SCHEMA: dict[str, Any] = {"dropout": _number(0.0, 0.95),
                                     "width": _number(0.0, 4.0, low_inclusive=False)}

SCHEMAS: dict[str, dict[str, Any]] = {
    "synth": {
        "train_per_class": _integer(1),
        "valid_per_class": _integer(1),
        "test_per_class": _integer(1),
        "seed": _integer(0),
    },
    "data": {
        "source": _text,
        "labels": _choice(LABELS),
        "ferplus_votes": _text,
        "valid_fraction": _number(0.0, 0.5, low_inclusive=False),
        "seed": _integer(0),
    },
    "train": TRAIN_SCHEMA,
    "evaluate": {
        "tta": _choice(TTA_MODES),
        "batch_size": _integer(1),
        "device": _choice(DEVICES),
    },
}


def _validate(block: Any, schema: dict[str, Any], where: str, source: str, partial: bool) -> None:
    if not isinstance(block, dict):
        raise FerError(f"{source}: {where} must be a mapping of keys to values, got {block!r}")
    unknown = sorted(set(block) - set(schema))
    if unknown:
        raise FerError(f"{source}: {where}.{unknown[0]} is not a known parameter "
                       f"(known: {', '.join(schema)})")
    missing = [] if partial else [key for key in schema if key not in block]
    if missing:
        raise FerError(f"{source}: {where}.{missing[0]} is missing")
    for key, value in block.items():
        spec = schema[key]
        if isinstance(spec, dict):
            _validate(value, spec, f"{where}.{key}", source, partial)
        elif (problem := spec(value)) is not None:
            raise FerError(f"{source}: {where}.{key} {problem}")


def read_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FerError(f"{path}: parameters file does not exist")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark else ""
        raise FerError(f"{path}:{line} not valid YAML ({getattr(error, 'problem', error)})") from None
    if not isinstance(params, dict):
        raise FerError(f"{path}: must be a mapping of blocks (synth, data, train, ...)")
    return params


def stage_params(block: str, path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """One checked block of the parameters file: synth, data or evaluate."""
    params = read_params(path)
    if block not in params:
        raise FerError(f"{path}: block '{block}' is missing")
    values = params[block]
    if block == "data" and isinstance(values, dict):
        values = {**DATA_DEFAULTS, **values}
    _validate(values, SCHEMAS[block], block, str(path), partial=False)
    return values


def data_params(path: str | Path | None, flags_complete: bool, needed_flags: str) -> dict[str, Any]:
    """The checked data block of `path`, or of params.yaml when no path is given. Where there is no
    params.yaml (outside a project folder), DATA_CODE_DEFAULTS if the command's flags name everything
    else it needs (`flags_complete`), else an error that names those flags."""
    if path is None:
        if not DEFAULT_PARAMS.is_file():
            if flags_complete:
                return dict(DATA_CODE_DEFAULTS)
            raise FerError(f"{DEFAULT_PARAMS}: parameters file does not exist (outside a project folder, "
                           f"give {needed_flags})")
        path = DEFAULT_PARAMS
    return stage_params("data", path)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `override` laid over it, nested blocks merged key by key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def model_params(model: str, path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The training parameters for one model: `train:` with the model's block laid over it."""
    check_choice("model", model, MODEL_NAMES)
    params = read_params(path)
    for block in ("train", model):
        if block not in params:
            raise FerError(f"{path}: block '{block}' is missing")
    shared = params["train"]
    if isinstance(shared, dict):
        shared = {**TRAIN_DEFAULTS, **shared}
        if isinstance(shared.get("augment"), dict):
            shared["augment"] = {**AUGMENT_DEFAULTS, **shared["augment"]}
    _validate(shared, TRAIN_SCHEMA, "train", str(path), partial=False)
    own = params[model] or {}
    model_schema = {**TRAIN_SCHEMA, **MODEL_ONLY_SCHEMA}
    _validate(own, model_schema, model, str(path), partial=True)
    merged = merge(shared, own)
    merged.setdefault("dropout", 0.0)
    merged.setdefault("width", 1.0)
    return merged

"""Whether predicted probabilities mean what they say, and temperature scaling to make them.

Temperature scaling (Guo et al., 2017) divides every logit by one number T fitted on held-out
data; it changes no prediction (the arg-max stays), only how confident each one is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from ferkit.data.arrays import load_classes, load_split
from ferkit.inference.proba import predict_proba
from ferkit.models.checkpoint import (
    Checkpoint,
    check_classes,
    ensemble_of,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)

ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)


def fit_temperature(log_probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T in (0.05, 20) that minimises the negative log-likelihood of softmax(logits / T).

    Log-probabilities serve as logits: they differ from them by a constant per row, which softmax
    ignores at every temperature."""
    rows = np.arange(len(labels))

    def nll(temperature: float) -> float:
        return float(-log_softmax(log_probabilities / temperature, axis=1)[rows, labels].mean())

    return float(minimize_scalar(nll, bounds=TEMPERATURE_RANGE, method="bounded").x)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """The gap between confidence and accuracy, averaged over equal-width confidence bins, weighted
    by how many predictions fall in each."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(gap)


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probabilities, np.finfo(np.float32).tiny, None))


def run(checkpoints: Sequence[Path], out: Path, data_dir: Path, half: bool = False) -> int:
    """`fer calibrate`: fit T on the valid split (PublicTest), write the checkpoint with it; several
    checkpoints become one ensemble (ferkit.models.checkpoint.ensemble_of), calibrated as a whole."""
    loaded = [load_checkpoint(path) for path in checkpoints]
    state = loaded[0] if len(loaded) == 1 else ensemble_of(loaded, [str(path) for path in checkpoints])
    header = state.header
    source = " + ".join(map(str, checkpoints))
    model = model_from_checkpoint(state, source=source)
    _, classes = load_classes(data_dir)
    check_classes(header, classes, source, f"give --data a folder that holds {', '.join(header.classes)}")
    images, labels = load_split(data_dir, "valid")
    probabilities = predict_proba(model, images, header.mean, header.std)
    temperature = fit_temperature(log_probabilities(probabilities), labels)
    calibrated = predict_proba(model, images, header.mean, header.std, temperature=temperature)
    weights = {name: value.half() if half and value.is_floating_point() else value
               for name, value in model.state_dict().items()}
    # The header, with the temperature; training's extras (parameters, resume state) stay behind.
    save_checkpoint(out, Checkpoint(replace(header, temperature=temperature,
                                            calibrated_on=f"{data_dir}/valid ({len(labels)} images)"), weights))
    before, after = (expected_calibration_error(p, labels) for p in (probabilities, calibrated))
    print(f"{out}: temperature {temperature:.4f}; expected calibration error on {data_dir}/valid "
          f"{before:.4f} -> {after:.4f}")
    return 0

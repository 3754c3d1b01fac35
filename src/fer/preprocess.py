"""The `preprocess` stage: read FER-2013, check it, write the split arrays and the data report.

Everything is read and checked before anything is written, and the arrays are written into a
temporary folder that replaces the output folder only at the end, so bad input never leaves
partial outputs behind and never touches the outputs of an earlier good run.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from fer.atomic import atomic_dir, write_json
from fer.emotions import EMOTIONS, SPLITS
from fer.errors import FerError
from fer.params import DEFAULT_PARAMS, stage_params
from fer.reading import Dataset, read_source

DEFAULT_OUT = Path("data/processed")
DEFAULT_REPORT = Path("metrics/data.json")
REPORT_NAME = "data.json"  # the report's name inside --out DIR
OUTPUT_FILES = tuple(f"{split}_{kind}.npy" for split in SPLITS for kind in ("images", "labels"))

# Fixed odd 64-bit multipliers: an image's fingerprint is the wrapping sum of its 288 eight-byte
# words times these. Equal fingerprints are then checked byte for byte, so a collision cannot
# merge two different images.
_MIXERS = np.random.default_rng(2013).integers(0, 2**63, size=288, dtype=np.uint64) * 2 + 1


def run(params_path: Path = DEFAULT_PARAMS, source: str | None = None, out: Path | None = None) -> None:
    """Read data.source (or `source`), write {train,valid,test}_{images,labels}.npy and the report."""
    params = stage_params("data", params_path)
    source_text = source if source is not None else params["source"]
    out_dir = Path(out) if out is not None else DEFAULT_OUT
    _check_replaceable(out_dir)
    data = read_source(Path(source_text), params["valid_fraction"], params["seed"])
    report = data_report(data, source_text)
    report_path = out_dir / REPORT_NAME if out is not None else DEFAULT_REPORT
    try:
        _write(data, report if out is not None else None, out_dir)
        if out is None:
            write_json(report_path, report)
    except OSError as error:
        raise FerError(f"{error.filename or out_dir}: cannot write ({error.strerror or error})") from None
    print(_summary(report, out_dir, report_path))


def _write(data: Dataset, report: dict[str, Any] | None, out_dir: Path) -> None:
    """The six arrays, and the report if given, into a folder that replaces out_dir only when complete."""
    with atomic_dir(out_dir) as tmp:
        for split, images in data.images.items():
            np.save(tmp / f"{split}_images.npy", images)
            np.save(tmp / f"{split}_labels.npy", data.labels[split])
        if report is not None:
            write_json(tmp / REPORT_NAME, report)


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to replace anything but a folder of earlier preprocess outputs (think `--out .`)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise FerError(f"{out_dir}: exists and is not a folder")
    ours = (*OUTPUT_FILES, REPORT_NAME)
    strangers = sorted(path.name for path in out_dir.iterdir() if path.name not in ours)
    if strangers:
        raise FerError(f"{out_dir}: holds files that preprocess did not write (such as {strangers[0]}); "
                       "refusing to replace it")


def data_report(data: Dataset, source: str) -> dict[str, Any]:
    """Counts per split and class, duplicates, constant images and conversions, as plain JSON."""
    rows = data.all_images.reshape(len(data.all_images), -1)
    split_of = np.repeat(np.arange(len(SPLITS)), data.sizes)
    constant = rows.min(axis=1) == rows.max(axis=1)  # blank images: all black, all white, ...
    return {
        "source": source,
        "images": len(rows),
        "valid_from": data.valid_from,
        "splits": {split: _class_counts(labels) for split, labels in data.labels.items()},
        "duplicates": duplicates_report(content_ids(rows), data.all_labels, split_of),
        "constant_images": {split: int(constant[split_of == code].sum()) for code, split in enumerate(SPLITS)},
        "converted_images": data.converted,
    }


def _class_counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(EMOTIONS))
    return {"total": int(len(labels)), **{name: int(count) for name, count in zip(EMOTIONS, counts)}}


def duplicates_report(ids: np.ndarray, labels: np.ndarray, split_of: np.ndarray) -> dict[str, Any]:
    """Exact duplicates (equal `ids`): extra copies within each split, images found in two splits,
    and, for both, how many of those images carry more than one label."""
    report: dict[str, Any] = {
        "distinct_images": int(len(np.unique(ids))),
        "within_split": {}, "within_split_conflicting_labels": {},
        "across_splits": {}, "across_splits_conflicting_labels": {},
    }
    for code, split in enumerate(SPLITS):
        chosen = split_of == code
        report["within_split"][split] = int(chosen.sum()) - len(np.unique(ids[chosen]))
        report["within_split_conflicting_labels"][split] = _several_labels(ids[chosen], labels[chosen])
    for first, second in itertools.combinations(range(len(SPLITS)), 2):
        pair = f"{SPLITS[first]}_{SPLITS[second]}"
        shared = np.intersect1d(ids[split_of == first], ids[split_of == second])
        chosen = np.isin(split_of, (first, second)) & np.isin(ids, shared)
        report["across_splits"][pair] = len(shared)
        report["across_splits_conflicting_labels"][pair] = _several_labels(ids[chosen], labels[chosen])
    return report


def content_ids(rows: np.ndarray) -> np.ndarray:
    """Number each row (N, 2304) uint8 so that two rows get the same number exactly when equal."""
    fingerprints = rows.view(np.uint64) @ _MIXERS  # wraps around: a 64-bit hash per row
    _, first, ids = np.unique(fingerprints, return_index=True, return_inverse=True)
    ids = ids.ravel()
    repeated = np.flatnonzero(np.bincount(ids)[ids] > 1)
    if np.array_equal(rows[repeated], rows[first[ids[repeated]]]):
        return ids
    # a fingerprint collision: fall back to comparing whole rows (slower, but exact)
    _, ids = np.unique(rows.view(np.dtype((np.void, rows.shape[1]))).ravel(), return_inverse=True)
    return ids.ravel()


def _several_labels(ids: np.ndarray, labels: np.ndarray) -> int:
    """How many distinct images among these rows appear with more than one label."""
    distinct_pairs = np.unique(np.stack([ids, labels], axis=1), axis=0)
    return int((np.bincount(distinct_pairs[:, 0]) > 1).sum()) if len(distinct_pairs) else 0


def _summary(report: dict[str, Any], out_dir: Path, report_path: Path) -> str:
    counts = ", ".join(f"{split} {report['splits'][split]['total']}" for split in SPLITS)
    duplicates = report["duplicates"]
    return (f"preprocess: {counts} images -> {out_dir}; {sum(duplicates['within_split'].values())} repeats "
            f"within splits, {sum(duplicates['across_splits'].values())} images shared across splits, "
            f"{sum(report['constant_images'].values())} constant images; report: {report_path}")

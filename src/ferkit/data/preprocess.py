"""The `preprocess` stage: read FER-2013, check it, write the split arrays and the data report.

Everything is read and checked before anything is written. The arrays and the duplicates list go
into a temporary folder, and the report into a temporary file; only when all of them are complete
does the folder replace the output folder and then the file replace the report. So bad input never
leaves partial outputs behind, never touches the outputs of an earlier good run, and the report
always describes the arrays beside it.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
from pathlib import Path
from typing import Any

import numpy as np

from ferkit.atomic import atomic_dir, atomic_path, write_json
from ferkit.data.arrays import CLASSES_FILE, PROBABILITIES_FILE, classes_json
from ferkit.data.labelled import read_dataset
from ferkit.data.reading import Dataset
from ferkit.emotions import SPLITS
from ferkit.errors import FerError
from ferkit.layout import DATA_DIR, DATA_METRICS
from ferkit.params import data_params

REPORT_NAME = "data.json"  # the full report, inside the output folder
DUPLICATES_NAME = "duplicates.csv"  # every copy of every repeated image, beside the arrays
DUPLICATES_COLUMNS = ("group", "split", "row", "source", "label", "conflicting")
OUTPUT_FILES = (*(f"{split}_{kind}.npy" for split in SPLITS for kind in ("images", "labels")), CLASSES_FILE,
                PROBABILITIES_FILE, DUPLICATES_NAME)

# Fixed odd 64-bit multipliers: an image's fingerprint is the wrapping sum of its 288 eight-byte
# words times these. Equal fingerprints are then checked byte for byte, so a collision cannot
# merge two different images.
_MIXERS = np.random.default_rng(2013).integers(0, 2**63, size=288, dtype=np.uint64) * 2 + 1


def run(params_path: Path | None = None, source: str | None = None, out: Path | None = None,
        labels: str | None = None, ferplus_votes: str | None = None) -> None:
    """Read data.source (or `source`) with data.labels (or `labels`), write the arrays (see
    ferkit.data.arrays), duplicates.csv and the report.

    The data block comes from `params_path`, else params.yaml; outside a project folder, where there
    is none, `source` and `out` are enough and the rest takes the code's defaults."""
    params = data_params(params_path, flags_complete=source is not None and out is not None,
                         needed_flags="--source and --out")
    source_text = source if source is not None else params["source"]
    label_set = labels if labels is not None else params["labels"]
    out_dir = Path(out) if out is not None else DATA_DIR
    _check_replaceable(out_dir)
    data = read_dataset(Path(source_text), label_set, ferplus_votes, params.get("ferplus_votes"),
                        params["valid_fraction"], params["seed"])
    ids = content_ids(_flat_images(data))
    report = data_report(data, source_text, ids, duplicates_csv=str(out_dir / DUPLICATES_NAME), labels=label_set)
    _write(data, label_set, report, duplicate_rows(data, ids), out_dir, None if out is not None else DATA_METRICS)
    print(_summary(report, out_dir, out_dir / REPORT_NAME))


def _write(data: Dataset, labels: str, report: dict[str, Any], duplicates: list[tuple[Any, ...]], out_dir: Path,
           totals_path: Path | None) -> None:
    """Everything into temporary places first; then out_dir is replaced, then totals_path.

    The full report goes inside out_dir; totals_path (the stage's DVC metric) gets its few totals.
    Both are serialised before either rename, so a bad value fails with the old outputs untouched.
    The folder goes first because replacing it is the step that can fail (it removes the old
    folder); the last step is a single rename of a file within its own folder.
    """
    totals_slot = atomic_path(totals_path) if totals_path is not None else contextlib.nullcontext()
    with totals_slot as totals_tmp, atomic_dir(out_dir) as tmp:
        for split, images in data.images.items():
            np.save(tmp / f"{split}_images.npy", images)
            np.save(tmp / f"{split}_labels.npy", data.labels[split])
        np.save(tmp / PROBABILITIES_FILE, data.by_split(data.label_distributions())["train"])
        write_json(tmp / CLASSES_FILE, classes_json(labels, data.classes))
        _write_duplicates(tmp / DUPLICATES_NAME, duplicates)
        write_json(tmp / REPORT_NAME, report)
        if totals_tmp is not None:
            write_json(totals_tmp, report_totals(report))
    # leaving the `with`: atomic_dir renames first, then the totals' temporary file


def _write_duplicates(path: Path, rows: list[tuple[Any, ...]]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(DUPLICATES_COLUMNS)
        writer.writerows(rows)


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to replace anything but a folder of earlier preprocess outputs (think `--out .`)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise FerError(f"{out_dir}: exists and is not a folder")
    ours = (*OUTPUT_FILES, REPORT_NAME)  # duplicates.csv is in OUTPUT_FILES
    strangers = sorted(path.name for path in out_dir.iterdir() if path.name not in ours)
    if strangers:
        raise FerError(f"{out_dir}: holds files that preprocess did not write (such as {strangers[0]}); "
                       "refusing to replace it")


def data_report(data: Dataset, source: str, ids: np.ndarray | None = None,
                duplicates_csv: str | None = None, labels: str = "fer2013") -> dict[str, Any]:
    """Counts per split and class, duplicates, constant images and conversions, as plain JSON.

    `ids` are content_ids of the images (computed if not given); `duplicates_csv` is where the
    list of duplicates is written, named in the report so a reader can find it.
    """
    rows = _flat_images(data)
    split_of = data.split_codes
    ids = content_ids(rows) if ids is None else ids
    constant = rows.min(axis=1) == rows.max(axis=1)  # blank images: all black, all white, ...
    return {
        "source": source,
        "labels": labels,
        "classes": list(data.classes),
        "images": len(rows),
        "valid_from": data.valid_from,
        "splits": {split: _class_counts(split_labels, data.classes) for split, split_labels in data.labels.items()},
        "duplicates": duplicates_report(ids, data.all_labels, split_of),
        "duplicates_csv": duplicates_csv,
        "constant_images": {split: int(constant[split_of == code].sum()) for code, split in enumerate(SPLITS)},
        "converted_images": data.converted,
    }


def _flat_images(data: Dataset) -> np.ndarray:
    return data.all_images.reshape(len(data.all_images), -1)


def _class_counts(labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(classes))
    return {"total": int(len(labels)), **{name: int(count) for name, count in zip(classes, counts)}}


def duplicates_report(ids: np.ndarray, labels: np.ndarray, split_of: np.ndarray) -> dict[str, Any]:
    """Exact duplicates (equal `ids`): extra copies within each split, images found in two splits,
    and, for both, how many of those images carry more than one label."""
    copies = np.bincount(ids)
    report: dict[str, Any] = {
        "distinct_images": int(np.count_nonzero(copies)),
        "repeated_images": int(np.count_nonzero(copies > 1)),  # images with two or more copies
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


def duplicate_rows(data: Dataset, ids: np.ndarray) -> list[tuple[Any, ...]]:
    """One row per copy of each image that occurs more than once (DUPLICATES_COLUMNS): its group
    (1, 2, ... in order of first appearance), split, row within the split, CSV line or file path,
    emotion, and whether the group's copies disagree on the label."""
    repeated = np.flatnonzero(np.bincount(ids)[ids] > 1)  # positions in train, valid, test order
    groups, first, group_of = np.unique(ids[repeated], return_index=True, return_inverse=True)
    number = np.argsort(np.argsort(first)) + 1  # groups numbered by where they first appear
    conflicting = _several_labels_per_id(ids, data.all_labels)
    split_of = data.split_codes
    split_start = np.concatenate(([0], np.cumsum(data.sizes)[:-1]))
    origins = data.origins.tolist() if data.origins is not None else [""] * len(ids)
    rows = []
    for position, group in zip(repeated.tolist(), group_of.ravel().tolist()):
        split = int(split_of[position])
        rows.append((int(number[group]), SPLITS[split], position - int(split_start[split]), origins[position],
                     data.classes[data.all_labels[position]], bool(conflicting[groups[group]])))
    rows.sort(key=lambda row: row[0])  # stable: a group's copies stay in train, valid, test order
    return rows


def _several_labels_per_id(ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each id, whether its rows carry more than one label."""
    distinct_pairs = np.unique(np.stack([ids, labels], axis=1), axis=0)
    return np.bincount(distinct_pairs[:, 0], minlength=int(ids.max(initial=-1)) + 1) > 1


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
    return int(_several_labels_per_id(ids, labels).sum())


def report_totals(report: dict[str, Any]) -> dict[str, int]:
    """The few numbers of the data report that are worth comparing across experiments."""
    duplicates = report["duplicates"]
    return {"images": report["images"], "repeats_within_splits": sum(duplicates["within_split"].values()),
            "shared_across_splits": sum(duplicates["across_splits"].values()),
            "constant_images": sum(report["constant_images"].values())}


def _summary(report: dict[str, Any], out_dir: Path, report_path: Path) -> str:
    counts = ", ".join(f"{split} {report['splits'][split]['total']}" for split in SPLITS)
    totals = report_totals(report)
    return (f"preprocess: {counts} images -> {out_dir}; {totals['repeats_within_splits']} repeats within splits, "
            f"{totals['shared_across_splits']} images shared across splits, {totals['constant_images']} "
            f"constant images; report: {report_path}")

"""Labelled faces, for `fer preprocess` (split arrays to train on) and `fer evaluate --data` (any
data to score a model on): one reader for both.

The sources are the Kaggle CSV (plain or gzip) and the Kaggle image folder (train/ and test/, each
with one folder per class); `fer evaluate --data` also takes a folder of class folders, and a CSV in
FER-2013's layout whose Usage column holds other values (`Test`, only `Training`, ...). Class
folders may use any spelling of emotions.CLASS_SPELLINGS (angry/anger, happy/happiness, ...), and a
folder's labels are its folder names. The CSV's labels are FER-2013's, or FER+'s majority labels
from a votes file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ferkit.data import ferplus
from ferkit.data.reading import (
    CsvRows,
    Dataset,
    holds_split_folders,
    read_class_folders,
    read_csv,
    read_csv_usages,
    read_folder,
    read_source,
)
from ferkit.emotions import LABEL_SETS, SPLIT_TO_USAGE, SPLITS, USAGE_TO_SPLIT
from ferkit.errors import FerError
from ferkit.params import DATA_CODE_DEFAULTS

SPLIT_NAMES = {**USAGE_TO_SPLIT, **{split: split for split in SPLITS}}  # PublicTest or valid, ...


def label_set_of(classes: Sequence[str]) -> str | None:
    """The name of the label set with exactly these classes, if any."""
    return next((name for name, names in LABEL_SETS.items() if tuple(classes) == names), None)


def votes_file(labels: str, source: str, given: str | Path | None,
               configured: str | Path | None = None) -> Path | None:
    """The FER+ votes file that label set `labels` needs (`given`, else `configured`), or None for
    FER-2013's labels, which the source carries itself. Giving one to FER-2013's labels is an error."""
    if labels != "ferplus":
        if given is not None:
            raise FerError(f"{source}: --ferplus-votes applies only to FER+ labels; these are {labels}'s")
        return None
    votes = given if given is not None else configured
    if votes is None:
        raise FerError(f"{source}: FER+ labels are the majority of the FER+ votes: give the FER+ votes file with "
                       "--ferplus-votes")
    return Path(votes)


def relabelled(data: Dataset, votes: Path | None, source: str) -> Dataset:
    """`data` as read, or with FER+'s majority labels when there is a votes file."""
    return data if votes is None else ferplus.relabel(data, ferplus.read_votes(votes), source)


def read_dataset(source: Path, labels: str, votes: str | Path | None = None, configured_votes: str | Path | None = None,
                 valid_fraction: float = DATA_CODE_DEFAULTS["valid_fraction"],
                 seed: int = DATA_CODE_DEFAULTS["seed"]) -> Dataset:
    """`fer preprocess`: a CSV or image folder as train, valid and test, with the labels of label set
    `labels`; FER+'s come from `votes` (--ferplus-votes), else from `configured_votes` (data.ferplus_votes)."""
    votes_path = votes_file(labels, str(source), votes, configured_votes)
    return relabelled(read_source(source, valid_fraction, seed), votes_path, str(source))


def read_labelled(path: Path, classes: Sequence[str], split: str | None = None,
                  votes: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`fer evaluate --data`: images and labels (indices into the model's `classes`) from a CSV (all
    rows or those of one Usage value, with the labels of the model's label set), an image folder (all
    of it or one split, as preprocess splits it) or a folder of class folders."""
    return read_labelled_splits(path, classes, (split,), votes)[0]


def read_labelled_splits(path: Path, classes: Sequence[str], splits: Sequence[str | None],
                         votes: str | Path | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """`read_labelled` of each of `splits` (None: all of it), reading the source once."""
    if not path.exists():
        raise FerError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_folder(path, classes, splits, votes)
    if not path.name.lower().endswith((".csv", ".csv.gz")):
        raise FerError(f"{path}: not a .csv, .csv.gz or folder of class folders")
    labels = label_set_of(classes)
    if labels is None:
        raise FerError(f"{path}: the model's classes ({', '.join(classes)}) are no label set that a CSV can "
                       f"supply ({', '.join(LABEL_SETS)}); evaluate it on class folders")
    votes_path = votes_file(labels, str(path), votes)
    if votes_path is None:
        rows = read_csv_usages(path)
        return [_usage_rows(rows, split, path) for split in splits]
    # FER+ votes line up with FER-2013's own CSV, row by row and split by split
    _check_split_names(splits)
    data = relabelled(read_csv(path), votes_path, str(path))
    return [_split_rows(data, split) for split in splits]


def _read_folder(path: Path, classes: Sequence[str], splits: Sequence[str | None],
                 votes: str | Path | None) -> list[tuple[np.ndarray, np.ndarray]]:
    if votes is not None:
        raise FerError(f"{path}: --ferplus-votes applies to a CSV; a folder's labels are its folder names")
    if not holds_split_folders(path):
        if any(split is not None for split in splits):
            raise FerError(f"{path}: --split applies to a CSV or an image folder with train/ and test/; "
                           "for a folder of class folders, name the folder of the split")
        return [read_class_folders(path, classes)] * len(splits)
    _check_split_names(splits)
    data = read_folder(path, DATA_CODE_DEFAULTS["valid_fraction"], DATA_CODE_DEFAULTS["seed"], classes)
    return [_split_rows(data, split) for split in splits]


def _check_split_names(splits: Sequence[str | None]) -> None:
    unknown = [split for split in splits if split is not None and split not in SPLIT_NAMES]
    if unknown:
        raise FerError(f"unknown --split '{unknown[0]}' (known: {', '.join(SPLIT_NAMES)})")


def _split_rows(data: Dataset, split: str | None) -> tuple[np.ndarray, np.ndarray]:
    if split is None:
        return data.all_images, data.all_labels
    return data.images[SPLIT_NAMES[split]], data.labels[SPLIT_NAMES[split]]


def _usage_rows(rows: CsvRows, split: str | None, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All rows, or those whose Usage is `split`: any value the file has, or FER-2013's split names
    (train, valid, test) for its own values."""
    if not len(rows.labels):
        raise FerError(f"{path}: no rows after the header")
    if split is None:
        return rows.images, rows.labels
    usage = split if split in rows.usage_names else SPLIT_TO_USAGE.get(SPLIT_NAMES.get(split, ""))
    if usage not in rows.usage_names:
        aliases = [name for name, value in SPLIT_TO_USAGE.items() if value in rows.usage_names]
        also = f" (or {', '.join(aliases)})" if aliases else ""
        raise FerError(f"{path}: unknown --split '{split}': its Usage values are {', '.join(rows.usage_names)}{also}")
    chosen = rows.usages == rows.usage_names.index(usage)
    return rows.images[chosen], rows.labels[chosen]

"""FER+ labels (Barsoum et al., 2016): ten crowd votes per FER-2013 image instead of one label.

The votes file, `fer2013new.csv`, has the header `Usage,Image name,neutral,happiness,surprise,
sadness,anger,disgust,fear,contempt,unknown,NF` and one row per row of fer2013.csv, in the same
order. Two label forms come from it, as the FER+ authors define them:

- the majority label: zero every emotion that got a single vote; keep the image when its top class
  holds more than half of the remaining votes and is an emotion (not "unknown" or "not a face");
- the probability label: the remaining emotion votes, renormalised to sum to 1 (training targets).

Images without a majority, with a non-emotion on top, or whose votes row names no image are dropped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ferkit.data.reading import Dataset
from ferkit.emotions import LABEL_SETS, SPLIT_TO_USAGE, SPLITS, USAGE_TO_SPLIT
from ferkit.errors import FerError

CLASSES = LABEL_SETS["ferplus"]
# The votes file's column for each of our classes, then its two non-emotion columns.
VOTE_COLUMNS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral",
                                 "contempt", "unknown", "NF")
assert len(VOTE_COLUMNS) == len(CLASSES) + 2
REQUIRED_COLUMNS = ("Usage", "Image name", *VOTE_COLUMNS)


@dataclass(frozen=True)
class Votes:
    """The votes file, one entry per row, in file order."""

    path: Path
    splits: np.ndarray  # int (N,): index into SPLITS, from the row's Usage
    named: np.ndarray  # bool (N,): whether the row names an image
    counts: np.ndarray  # int64 (N, 10): votes in CLASSES order, then unknown and not-a-face
    lines: np.ndarray  # int64 (N,): each row's 1-based line number


def read_votes(path: Path) -> Votes:
    """Read and check every row; a malformed one is a one-line error naming its line."""
    if not path.is_file():
        raise FerError(f"{path}: FER+ votes file does not exist (data.ferplus_votes or --ferplus-votes)")
    splits, named, counts, lines = [], [], [], []
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        missing = [name for name in REQUIRED_COLUMNS if name not in (header or [])]
        if missing:
            raise FerError(f"{path}: not a FER+ votes file: the header lacks '{missing[0]}' "
                           f"(expected {','.join(REQUIRED_COLUMNS)})")
        usage_at, name_at = header.index("Usage"), header.index("Image name")
        vote_at = [header.index(name) for name in VOTE_COLUMNS]
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) != len(header):
                raise FerError(f"{path} line {line}: {len(row)} fields, expected {len(header)}")
            split = USAGE_TO_SPLIT.get(row[usage_at].strip())
            if split is None:
                raise FerError(f"{path} line {line}: Usage '{row[usage_at][:24]}' is not one of "
                               f"{', '.join(USAGE_TO_SPLIT)}")
            try:
                votes = [int(row[at]) for at in vote_at]
            except ValueError:
                bad = next(at for at in vote_at if not row[at].strip().isdigit())
                raise FerError(f"{path} line {line}: {header[bad]} vote '{row[bad][:24]}' is not a whole "
                               "number") from None
            if min(votes) < 0:
                raise FerError(f"{path} line {line}: negative vote count")
            splits.append(SPLITS.index(split))
            named.append(bool(row[name_at].strip()))
            counts.append(votes)
            lines.append(line)
    if not counts:
        raise FerError(f"{path}: no vote rows after the header")
    return Votes(path, np.array(splits), np.array(named), np.array(counts, np.int64), np.array(lines, np.int64))


def _without_single_votes(counts: np.ndarray) -> np.ndarray:
    """The authors' outlier removal: an emotion that only one annotator saw gets no votes."""
    return np.where(counts == 1, 0, counts)


def majority_labels(counts: np.ndarray) -> np.ndarray:
    """Per row, the index into CLASSES of the majority emotion, or -1 where the image is dropped."""
    kept = _without_single_votes(counts)
    top = kept.argmax(axis=1)
    has_majority = kept.max(axis=1) * 2 > kept.sum(axis=1)  # more than half, so `top` is unique
    return np.where(has_majority & (top < len(CLASSES)), top, -1)


def probability_labels(counts: np.ndarray) -> np.ndarray:
    """float32 (N, 8): the emotion votes left after outlier removal, as a distribution; rows with no
    emotion votes left are all zero (the majority rule drops them)."""
    emotions = _without_single_votes(counts)[:, :len(CLASSES)].astype(np.float64)
    totals = emotions.sum(axis=1, keepdims=True)
    return (emotions / np.maximum(totals, 1)).astype(np.float32)


def relabel(data: Dataset, votes: Votes, source: str) -> Dataset:
    """`data` (read from the Kaggle CSV) with FER+ majority labels and vote distributions; the
    images the majority rule drops are left out."""
    if data.origins is None or data.origins.dtype.kind != "i":
        raise FerError(f"{source}: FER+ labels need the Kaggle CSV, whose rows line up with the votes file "
                       f"{votes.path}; an image folder does not")
    if len(votes.counts) != len(data.all_labels):
        raise FerError(f"{votes.path}: {len(votes.counts):,} vote rows, but {source} has {len(data.all_labels):,} "
                       "rows: row i of the votes must describe row i of the pixels file")
    row_of = np.empty(len(data.origins), np.int64)  # each image's row in file order
    row_of[np.argsort(data.origins, kind="stable")] = np.arange(len(data.origins))
    mismatched = np.flatnonzero(votes.splits[row_of] != data.split_codes)
    if len(mismatched):
        first = mismatched[np.argmin(row_of[mismatched])]
        raise FerError(f"{votes.path} line {votes.lines[row_of[first]]}: Usage {_usage(votes.splits[row_of[first]])}, "
                       f"but {source} line {data.origins[first]} is {_usage(data.split_codes[first])}: "
                       "the two files do not line up")
    labels = majority_labels(votes.counts)[row_of]
    keep = (labels >= 0) & votes.named[row_of]
    return replace(data, all_images=data.all_images[keep], all_labels=labels[keep],
                   sizes=tuple(np.bincount(data.split_codes[keep], minlength=len(SPLITS)).tolist()),
                   origins=data.origins[keep], classes=CLASSES,
                   targets=probability_labels(votes.counts)[row_of][keep])


def _usage(split: int) -> str:
    return SPLIT_TO_USAGE[SPLITS[split]]

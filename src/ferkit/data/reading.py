"""Read FER-2013 into split arrays, from the Kaggle CSV (plain or gzip) or the Kaggle image folders,
and labelled faces from a folder of class folders.

The CSV is 301 MB of decimal text, so it is parsed with whole-array numpy operations on blocks of
about a hundred rows, on worker threads while the main thread decompresses: no Python code runs per
pixel or per row. Every check runs on a whole block at once; only when a block fails one does a slow
row-by-row pass find the first bad line and word the problem.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import sys
import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ferkit.emotions import (
    CLASS_SPELLINGS,
    FER2013_CLASSES,
    IMAGE_SIZE,
    PIXELS_PER_IMAGE,
    SPLIT_TO_USAGE,
    SPLITS,
    USAGE_TO_SPLIT,
)
from ferkit.errors import FerError


@dataclass
class Dataset:
    """All images uint8 (N, 48, 48) and labels int64 (N,): train rows, then valid, then test, each
    split in source order. One array rather than three saves the data report a copy."""

    all_images: np.ndarray
    all_labels: np.ndarray
    sizes: tuple[int, ...]  # rows per split, in SPLITS order
    converted: int = 0  # folder images that were not 48x48 grayscale
    valid_from: str = "PublicTest"  # or "train": a stratified share held out of train
    # where each row came from, so a report can point at it: the 1-based CSV line number (int64)
    # or the image file path (str); None for data made in memory
    origins: np.ndarray | None = None
    classes: tuple[str, ...] = FER2013_CLASSES  # what each label names
    # float32 (N, classes): each image's label distribution (FER+ votes); None = the one-hot labels
    targets: np.ndarray | None = None

    @classmethod
    def from_splits(cls, images: dict[str, np.ndarray], labels: dict[str, np.ndarray], **extra: Any) -> Dataset:
        return cls(np.concatenate([images[split] for split in SPLITS]),
                   np.concatenate([labels[split] for split in SPLITS]),
                   tuple(len(labels[split]) for split in SPLITS), **extra)

    def by_split(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """An array with one entry per row (train, then valid, then test), cut into the splits."""
        return dict(zip(SPLITS, np.split(rows, np.cumsum(self.sizes)[:-1])))

    @property
    def images(self) -> dict[str, np.ndarray]:
        return self.by_split(self.all_images)

    @property
    def labels(self) -> dict[str, np.ndarray]:
        return self.by_split(self.all_labels)

    @property
    def split_codes(self) -> np.ndarray:
        """Each row's index into SPLITS."""
        return np.repeat(np.arange(len(SPLITS)), self.sizes)

    def label_distributions(self) -> np.ndarray:
        """float32 (N, classes): `targets`, or the one-hot labels where there are none."""
        if self.targets is not None:
            return self.targets
        return np.eye(len(self.classes), dtype=np.float32)[self.all_labels]


def read_source(source: Path, valid_fraction: float, seed: int) -> Dataset:
    """Read a fer2013.csv, a fer2013.csv.gz or an image folder holding train/ and test/."""
    if not source.exists():
        raise FerError(f"{source}: no such file or folder")
    if source.is_dir():
        if not holds_split_folders(source) and any(child.is_dir() for child in _visible(source)):
            raise FerError(f"{source}: an image folder holds train/ and test/, each with class folders (angry/, "
                           "happy/, ...); this one has no train/ or test/")
        return read_folder(source, valid_fraction, seed)
    if not source.name.lower().endswith((".csv", ".csv.gz")):
        raise FerError(f"{source}: not a .csv, .csv.gz or image folder")
    return read_csv(source)


# ---------------------------------------------------------------------------------------------
# CSV

CSV_COLUMNS = ("emotion", "pixels", "Usage")
NEWLINE, CARRIAGE_RETURN, SPACE, QUOTE, COMMA = b'\n\r ",'
LABEL_CODES = {str(label).encode(): label for label in range(len(FER2013_CLASSES))}
USAGE_CODES = {usage.encode(): SPLITS.index(split) for usage, split in USAGE_TO_SPLIT.items()}

_BLOCK_BYTES = 1 << 20  # ~120 rows: small enough that a block's arrays stay in the CPU cache
_COMPRESSED_PIECE = 1 << 16  # gzip input read at a time
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib expects a gzip header and checks the CRC at the end
_WORKERS = 2  # parsing threads; numpy releases the GIL inside its array loops
_LONGEST_ROW = 1 << 16  # a real row is under 10 kB; a longer "line" means this is not FER-2013
_LEAD = b"\n\n\n"  # every block starts with this, so the 3 bytes before a pixel's end always exist
_FIELD_WIDTH = 16  # emotion and Usage fields are read into fixed-width strings this wide
_ANY_USAGE_WIDTH = 64  # ... except where any Usage value is accepted (`fer evaluate --data`)
_TRAIL = b"\n" * _ANY_USAGE_WIDTH  # ... and ends with this, so fixed-width reads of the last row's fields do too
_TRUNCATED = " (the file ends in the middle of this line: truncated?)"


@dataclass(frozen=True)
class _Columns:
    """Which field of a row holds what, from the header."""

    emotion: int
    pixels: int
    usage: int


@dataclass(frozen=True)
class _Block:
    """Whole lines of the file, padded so that reads a few bytes around any row stay in the buffer."""

    buffer: bytes  # _LEAD + lines + at least _TRAIL
    begin: int  # the rows to parse are buffer[begin:stop], each ending in a newline
    stop: int
    first_line: int  # 1-based line number of the line at `begin`
    unterminated: bool  # the file ended without a newline after these lines


@dataclass(frozen=True)
class _Lines:
    """The non-blank lines of a block: where each starts and ends (before CR LF) in the buffer."""

    block: _Block
    start: np.ndarray
    end: np.ndarray
    number: np.ndarray  # 1-based line numbers in the file


@dataclass(frozen=True)
class _Rows:
    images: np.ndarray  # uint8 (R, 2304)
    labels: np.ndarray  # int64 (R,)
    splits: np.ndarray  # int32 (R,): the Usage's code (for FER-2013's own Usage values, the index into SPLITS)
    lines: np.ndarray  # 1-based line numbers in the file, int64 (R,)


@dataclass(frozen=True)
class CsvRows:
    """Every row of a CSV in FER-2013's layout, in file order, with whatever Usage value it has."""

    images: np.ndarray  # uint8 (N, 48, 48)
    labels: np.ndarray  # int64 (N,)
    usages: np.ndarray  # int32 (N,): index into usage_names
    usage_names: tuple[str, ...]  # the Usage values the file holds, in order of first appearance
    lines: np.ndarray  # int64 (N,): 1-based line numbers in the file


class _SplitUsages:
    """FER-2013's own Usage values, coded as the index of their split: what `fer preprocess` needs."""

    width = _FIELD_WIDTH

    def get(self, value: bytes, default: int) -> int:
        return USAGE_CODES.get(value, default)

    def problem(self, value: bytes) -> str | None:
        return None if value in USAGE_CODES else f"Usage {_show(value)} is not one of {', '.join(USAGE_TO_SPLIT)}"


class _AnyUsages:
    """Any non-empty text as a Usage value, coded in the order the parsing threads meet them."""

    width = _ANY_USAGE_WIDTH

    def __init__(self) -> None:
        self.codes: dict[bytes, int] = {}
        self._lock = threading.Lock()  # two parsing threads may meet a new value at once

    def get(self, value: bytes, default: int) -> int:
        if self.problem(value):
            return default
        with self._lock:
            return self.codes.setdefault(value, len(self.codes))

    def problem(self, value: bytes) -> str | None:
        if not value:
            return "the Usage field is empty"
        # control bytes (a NUL, a stray CR) or broken UTF-8 mean a damaged row, not a split's name
        if min(value) < 0x20:
            return f"Usage {_show(value)} holds a control character"
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return f"Usage {_show(value)} is not UTF-8 text"
        return None


_Usages = _SplitUsages | _AnyUsages


class _BadLine(Exception):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(line, problem)
        self.line, self.problem = line, problem


def read_csv(path: Path) -> Dataset:
    """Parse the Kaggle CSV: a header naming emotion, pixels and Usage, then one image per row; every
    Usage is one of FER-2013's three (Training, PublicTest, PrivateTest), and each has rows."""
    parts: dict[str, list[_Rows]] = {split: [] for split in SPLITS}
    for rows in _parse_file(path, _SplitUsages()):
        _add_to_splits(parts, rows)
    return _csv_dataset(parts, path)


def read_csv_usages(path: Path) -> CsvRows:
    """Parse a CSV in FER-2013's layout whose Usage column may hold any values (`Test`, only `Training`,
    ...): for scoring a model on another data set shipped in that layout."""
    usages = _AnyUsages()
    parts = list(_parse_file(path, usages))
    codes = np.concatenate([np.empty(0, np.int32), *(rows.splits for rows in parts)])
    # The threads code values in the order they meet them; renumber them in file order.
    present, first_row = np.unique(codes, return_index=True)
    in_file_order = present[np.argsort(first_row)]
    renumber = np.zeros(len(usages.codes), np.int32)
    renumber[in_file_order] = np.arange(len(in_file_order), dtype=np.int32)
    name_of = {code: value.decode() for value, code in usages.codes.items()}
    return CsvRows(
        np.concatenate([np.empty((0, PIXELS_PER_IMAGE), np.uint8), *(rows.images for rows in parts)])
        .reshape(-1, IMAGE_SIZE, IMAGE_SIZE),
        np.concatenate([np.empty(0, np.int64), *(rows.labels for rows in parts)]),
        renumber[codes],
        tuple(name_of[code] for code in in_file_order.tolist()),
        np.concatenate([np.empty(0, np.int64), *(rows.lines for rows in parts)]),
    )


def _parse_file(path: Path, usages: _Usages) -> Iterator[_Rows]:
    """The rows of each block in file order; every problem is a one-line FerError."""
    try:
        blocks = _blocks(_gunzip(path) if path.name.lower().endswith(".gz") else _read_pieces(path))
        first = next(blocks, None)
        if first is None:
            raise FerError(f"{path}: empty file (expected a header: {','.join(CSV_COLUMNS)})")
        columns, first = _read_header(first, path)
        yield from _parse_in_order(itertools.chain([first], blocks), columns, usages)
    except _BadLine as bad:
        raise FerError(f"{path}: line {bad.line}: {bad.problem}") from None
    except EOFError:
        raise FerError(f"{path}: the gzip data ends early: truncated file?") from None
    except zlib.error as error:
        raise FerError(f"{path}: corrupt gzip data ({error})") from None
    except OSError as error:
        raise FerError(f"{path}: cannot read ({error.strerror or error})") from None


def _add_to_splits(parts: dict[str, list[_Rows]], rows: _Rows) -> None:
    """Append each row to its split's list, in file order."""
    if len(rows.splits) and rows.splits.min() == rows.splits.max():  # most blocks: no copy needed
        parts[SPLITS[rows.splits[0]]].append(rows)
        return
    for code, split in enumerate(SPLITS):
        chosen = rows.splits == code
        parts[split].append(_Rows(rows.images[chosen], rows.labels[chosen], rows.splits[chosen], rows.lines[chosen]))


def _read_pieces(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while piece := file.read(_BLOCK_BYTES):
            yield piece


def _gunzip(path: Path) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file (of one or more members), in pieces of bounded size.

    zlib directly, in small pieces, is about 15% faster here than the gzip module.
    """
    with path.open("rb") as file:
        if file.read(2) != b"\x1f\x8b":
            raise FerError(f"{path}: not a gzip file")
        file.seek(0)
        inflater, fed = zlib.decompressobj(wbits=_GZIP_WBITS), False
        while compressed := file.read(_COMPRESSED_PIECE):
            while compressed:
                fed = True
                yield inflater.decompress(compressed, _BLOCK_BYTES)
                if inflater.eof:  # one member ended; whatever follows starts the next
                    compressed = inflater.unused_data
                    inflater, fed = zlib.decompressobj(wbits=_GZIP_WBITS), False
                else:
                    compressed = inflater.unconsumed_tail
    if fed:
        yield inflater.flush()
        if not inflater.eof:
            raise EOFError


def _blocks(pieces: Iterator[bytes]) -> Iterator[_Block]:
    """Cut the stream into blocks of whole lines; the one copy that joins the pieces also pads them."""
    pending, size, line = [b""], 0, 1  # pending[0] is the unfinished line carried over
    for piece in itertools.chain(pieces, [None]):
        if piece is not None:
            pending.append(piece)
            size += len(piece)
            if size < _BLOCK_BYTES:
                continue
        buffer = b"".join((_LEAD, *pending, _TRAIL))
        stop = buffer.rfind(b"\n", len(_LEAD), len(buffer) - len(_TRAIL)) + 1
        carry = buffer[max(stop, len(_LEAD)):-len(_TRAIL)]
        if len(carry) > _LONGEST_ROW:
            raise _BadLine(line, f"runs over {_LONGEST_ROW} bytes without a line break: not a FER-2013 CSV")
        if stop:
            yield _Block(buffer, len(_LEAD), stop, line, unterminated=False)
            text = np.frombuffer(buffer, np.uint8, count=stop - len(_LEAD), offset=len(_LEAD))
            line += int(np.count_nonzero(text == NEWLINE))
        pending, size = [carry], len(carry)
    if pending[0]:
        buffer = b"".join((_LEAD, pending[0], b"\n", _TRAIL))
        yield _Block(buffer, len(_LEAD), len(buffer) - len(_TRAIL), line, unterminated=True)


def _read_header(block: _Block, path: Path) -> tuple[_Columns, _Block]:
    """The column layout, and the first block with its rows starting after the header."""
    start = block.begin
    end = block.buffer.index(b"\n", start, block.stop)
    head = block.buffer[start:start + 4096]
    if head.startswith(b"\x1f\x8b"):
        raise FerError(f"{path}: this is gzip data; name it .csv.gz")
    if b"\x00" in head:
        raise FerError(f"{path}: binary data, not a CSV text file")
    try:
        text = block.buffer[start:end].decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        raise FerError(f"{path}: line 1 is not UTF-8 text: not a CSV file") from None
    names = [name.strip().strip('"').strip() for name in text.split(",")]
    found = [name.lower() for name in names]
    shown = ", ".join(_show(name.encode()) for name in names)
    for column in CSV_COLUMNS:
        if found.count(column.lower()) != 1:
            problem = "is missing" if column.lower() not in found else "appears twice"
            raise _BadLine(1, f"header column '{column}' {problem} (header: {shown})")
    if len(names) != len(CSV_COLUMNS):
        raise _BadLine(1, f"header must name exactly {', '.join(CSV_COLUMNS)}; found {shown}")
    columns = _Columns(*(found.index(column.lower()) for column in CSV_COLUMNS))
    return columns, dataclasses.replace(block, begin=end + 1, first_line=block.first_line + 1)


def _parse_in_order(blocks: Iterator[_Block], columns: _Columns, usages: _Usages) -> Iterator[_Rows]:
    """Parse blocks on worker threads and yield their rows in file order.

    While the workers parse (numpy releases the GIL), this thread decompresses and cuts the next
    blocks. Only a few blocks are in flight at a time, which keeps memory flat.
    """
    with ThreadPoolExecutor(_WORKERS) as pool:
        pending: collections.deque[Future[_Rows]] = collections.deque()
        for block in blocks:
            pending.append(pool.submit(_parse_block, block, columns, usages))
            if len(pending) > 2 * _WORKERS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _parse_block(block: _Block, columns: _Columns, usages: _Usages) -> _Rows:
    """Images, labels and splits of the rows in a block; raises _BadLine for its first bad row."""
    everything = np.frombuffer(block.buffer, np.uint8)
    text = everything[block.begin:block.stop]
    newline_at = np.flatnonzero(text == NEWLINE) + block.begin
    line_start = np.concatenate(([block.begin], newline_at + 1))[:-1]
    line_end = newline_at - (everything[newline_at - 1] == CARRIAGE_RETURN)
    filled = line_end > line_start  # blank lines are skipped, but still counted
    lines = _Lines(block, line_start[filled], line_end[filled], block.first_line + np.flatnonzero(filled))
    if not len(lines.start):
        return _Rows(np.empty((0, PIXELS_PER_IMAGE), np.uint8), np.empty(0, np.int64), np.empty(0, np.int32),
                     np.empty(0, np.int64))

    commas = np.flatnonzero(text == COMMA) + block.begin
    first_comma = np.searchsorted(commas, lines.start)
    if (np.searchsorted(commas, lines.end) - first_comma != len(CSV_COLUMNS) - 1).any():
        _explain(lines, columns, usages)
    second_comma = commas[first_comma + 1]
    first_comma = commas[first_comma]
    # (start, end) of each field, in file order
    fields = [(lines.start, first_comma), (first_comma + 1, second_comma), (second_comma + 1, lines.end)]

    labels = _small_field_codes(everything, *fields[columns.emotion], LABEL_CODES)
    splits = _small_field_codes(everything, *fields[columns.usage], usages, usages.width)
    if (labels < 0).any() or (splits < 0).any():
        _explain(lines, columns, usages)
    pixel_start, pixel_end = _unquote_fields(everything, *fields[columns.pixels])
    images = _parse_pixels(everything, text, block.begin, pixel_start, pixel_end)
    if images is None:
        _explain(lines, columns, usages)
    return _Rows(images, labels.astype(np.int64), splits.astype(np.int32), lines.number.astype(np.int64))


def _small_field_codes(everything: np.ndarray, start: np.ndarray, end: np.ndarray,
                       codes: dict[bytes, int] | _Usages, width: int = _FIELD_WIDTH) -> np.ndarray:
    """Each field's code from `codes` (after trimming spaces and quotes), or -1 where it has none;
    a field wider than `width` has none."""
    offsets = np.arange(width)
    inside = offsets < (end - start)[:, None]
    chars = everything[start[:, None] + offsets]
    # numpy drops trailing NULs from fixed-width strings, so NULs in a field become 0xFF, which no
    # code has, and only the padding stays NUL
    chars = np.where(inside, np.where(chars == 0, 0xFF, chars), 0).astype(np.uint8)
    fields = chars.view(f"S{width}").ravel()
    # a block has only a handful of distinct values, so those few are looked up in Python
    distinct, which = np.unique(fields, return_inverse=True)
    looked_up = np.array([codes.get(_trim(value), -1) for value in distinct], np.int32)
    result = looked_up[which.ravel()]
    result[end - start > width] = -1
    return result


def _unquote_fields(
    everything: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    quoted = (end - start >= 2) & (everything[start] == QUOTE) & (everything[end - 1] == QUOTE)
    return start + quoted, end - quoted


def _parse_pixels(
    everything: np.ndarray, text: np.ndarray, begin: int, pixel_start: np.ndarray, pixel_end: np.ndarray
) -> np.ndarray | None:
    """Pixel values (R, 2304), or None if any row's pixels field is not 2304 integers 0-255.

    Every pixel ends just before a separator: one of the 2303 spaces inside its field, or the end of
    the field. Positions in `text` are relative to `begin`.
    """
    rows, separators = len(pixel_start), PIXELS_PER_IMAGE - 1
    start, end = pixel_start - begin, pixel_end - begin
    spaces = np.flatnonzero(text == SPACE)
    first_space = np.searchsorted(spaces, start)
    if (np.searchsorted(spaces, end) - first_space != separators).any():
        return None
    if len(spaces) == rows * separators:  # the usual case: no spaces outside the pixels fields
        inner_ends = spaces.reshape(rows, separators)
    else:
        inner_ends = spaces[first_space[:, None] + np.arange(separators)]
    inner, inner_digits = _values_before(everything, begin, inner_ends)
    last, last_digits = _values_before(everything, begin, end)
    if inner is None or last is None:
        return None
    # The values only look at the last 3 bytes of each pixel, so a longer one ("1234", "x12") slips
    # through them; but then the digits they counted fall short of the non-space bytes in the fields.
    if inner_digits + last_digits != int((end - start).sum()) - rows * separators:
        return None
    images = np.empty((rows, PIXELS_PER_IMAGE), np.uint8)
    images[:, :-1] = inner
    images[:, -1] = last
    return images


def _values_before(everything: np.ndarray, begin: int, ends: np.ndarray) -> tuple[np.ndarray | None, int]:
    """The numbers written in the (up to) 3 digits just before each of `ends`, and how many digits
    those are; None if a byte just before an end is not a digit or a number is over 255.

    _LEAD guarantees 3 bytes before `begin`, and no digit run crosses the start of a pixels field.
    """
    ones, tens, hundreds = (everything[begin - back:][ends] - ord("0") for back in (1, 2, 3))
    if ones.max() > 9:  # bytes below "0" wrap around to large numbers too
        return None, 0
    has_tens = tens < 10
    has_hundreds = has_tens & (hundreds < 10)
    below_100 = ones + 10 * (tens * has_tens)
    values = (hundreds * has_hundreds).astype(np.uint16) * 100 + below_100
    if values.max() > 255:
        return None, 0
    digits = ones.size + np.count_nonzero(has_tens) + np.count_nonzero(has_hundreds)
    return values.astype(np.uint8), digits


def _explain(lines: _Lines, columns: _Columns, usages: _Usages) -> NoReturn:
    """Raise _BadLine for the first bad row of a block that failed a whole-block check.

    This is the error path only, so it may loop over rows and split them in Python.
    """
    hint = _TRUNCATED if lines.block.unterminated else ""  # such a block holds just the last line
    for start, end, number in zip(lines.start.tolist(), lines.end.tolist(), lines.number.tolist()):
        problem = _row_problem(lines.block.buffer[start:end], columns, usages)
        if problem:
            raise _BadLine(number, problem + hint)
    raise _BadLine(int(lines.number[0]), "malformed row in this part of the file" + hint)


def _row_problem(row: bytes, columns: _Columns, usages: _Usages) -> str | None:
    fields = row.split(b",")
    if len(fields) != len(CSV_COLUMNS):
        expected = f"{len(CSV_COLUMNS)} comma-separated fields ({', '.join(CSV_COLUMNS)})"
        return f"expected {expected}, found {len(fields)}"
    emotion, usage = _trim(fields[columns.emotion]), _trim(fields[columns.usage])
    if emotion not in LABEL_CODES:
        return f"emotion {_show(emotion)} is not a label 0-{len(FER2013_CLASSES) - 1}"
    if len(fields[columns.usage]) > usages.width:
        return f"the Usage field is over {usages.width} characters long"
    if problem := usages.problem(usage):
        return problem
    return _pixels_problem(_unquote(fields[columns.pixels]))


def _pixels_problem(pixels: bytes) -> str | None:
    if not pixels.strip():
        return "the pixels field is empty"
    values = pixels.split(b" ")
    for position, value in enumerate(values, start=1):
        if not value:
            return f"pixel {position} is empty (two spaces in a row, or a space at either end)"
        if not (value.isdigit() and len(value) <= 3 and int(value) <= 255):
            return f"pixel {position} is {_show(value)}, not an integer 0-255"
    if len(values) != PIXELS_PER_IMAGE:
        return f"has {len(values)} pixels, expected {PIXELS_PER_IMAGE}"
    return None


def _trim(field: bytes) -> bytes:
    return field.strip(b' "')


def _unquote(field: bytes) -> bytes:
    quoted = len(field) >= 2 and field[:1] == field[-1:] == b'"'
    return field[1:-1] if quoted else field


def _show(value: bytes, limit: int = 24) -> str:
    text = value.decode("utf-8", "replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _csv_dataset(parts: dict[str, list[_Rows]], path: Path) -> Dataset:
    for split in SPLITS:
        if not sum(len(rows.labels) for rows in parts[split]):
            raise FerError(f"{path}: no rows with Usage {SPLIT_TO_USAGE[split]}, so the {split} split would be empty")
    in_order = [rows for split in SPLITS for rows in parts[split]]
    return Dataset(
        np.concatenate([rows.images for rows in in_order]).reshape(-1, IMAGE_SIZE, IMAGE_SIZE),
        np.concatenate([rows.labels for rows in in_order]),
        tuple(sum(len(rows.labels) for rows in parts[split]) for split in SPLITS),
        origins=np.concatenate([rows.lines for rows in in_order]),
    )


# ---------------------------------------------------------------------------------------------
# Image folders

SPLIT_FOLDERS = ("train", "test")  # an image folder's parts, in any letter case
_PREFIX_SPLITS = {usage.lower(): split for usage, split in USAGE_TO_SPLIT.items()}


def class_folder_labels(classes: Sequence[str]) -> dict[str, int]:
    """Each name a class folder may have, in lower case, and its label (the index into `classes`): any
    spelling in emotions.CLASS_SPELLINGS (angry/anger, happy/happiness, ...), else the class's name."""
    return {spelling: label for label, name in enumerate(classes)
            for spelling in CLASS_SPELLINGS.get(name, (name.lower(),))}


def _class_folder_names(classes: Sequence[str]) -> str:
    return ", ".join(CLASS_SPELLINGS.get(name, (name.lower(),))[0] for name in classes)


def holds_split_folders(root: Path) -> bool:
    """Whether `root` is laid out as the Kaggle image folder, with train/ and test/ (or one of them)."""
    return any(child.is_dir() and child.name.lower() in SPLIT_FOLDERS for child in _visible(root))


def read_folder(root: Path, valid_fraction: float, seed: int, classes: Sequence[str] = FER2013_CLASSES) -> Dataset:
    """Read train/<emotion>/*.jpg and test/<emotion>/*.jpg; a file-name prefix names its split.

    Without PublicTest_ names, valid is a stratified, seeded share of train and test is test/.
    The class folders name `classes`, in any spelling that class_folder_labels accepts.
    """
    files, labels, splits = [], [], []
    for part, folder in _part_folders(root).items():
        for path, label in _labelled_files(folder, classes):
            files.append(path)
            labels.append(label)
            splits.append(_PREFIX_SPLITS.get(path.name.split("_", 1)[0].lower(), part))
    images, converted = load_images(files)
    label_array, split_array = np.array(labels, np.int64), np.array(splits)
    chosen = {split: np.flatnonzero(split_array == split) for split in SPLITS}
    valid_from = "PublicTest"
    if not len(chosen["valid"]):
        chosen["train"], chosen["valid"] = _hold_out(chosen["train"], label_array, valid_fraction, seed, root)
        valid_from = "train"
    for split, rows in chosen.items():
        if not len(rows):
            raise FerError(f"{root}: no images for the {split} split")
    order = np.concatenate([chosen[split] for split in SPLITS])
    sizes = tuple(len(chosen[split]) for split in SPLITS)
    origins = np.array([str(path) for path in files], dtype=object)[order]
    return Dataset(images[order], label_array[order], sizes, converted=converted, valid_from=valid_from,
                   origins=origins, classes=tuple(classes))


def _part_folders(root: Path) -> dict[str, Path]:
    """train/ and test/ (in any letter case); any other folder would be data silently left out."""
    found = {child.name.lower(): child for child in _visible(root) if child.is_dir()}
    for name, child in found.items():
        if name not in SPLIT_FOLDERS:
            raise FerError(f"{child}: unexpected folder (an image folder holds just train/ and test/)")
    for name in SPLIT_FOLDERS:
        if name not in found:
            raise FerError(f"{root}: an image folder needs train/ and test/ subfolders; {name}/ is missing")
    return {name: found[name] for name in SPLIT_FOLDERS}


def _labelled_files(folder: Path, classes: Sequence[str]) -> Iterator[tuple[Path, int]]:
    """Every image file under folder/<emotion>/, sorted, with its label; hidden files are skipped."""
    label_of, names = class_folder_labels(classes), _class_folder_names(classes)
    for class_folder in _visible(folder):
        if not class_folder.is_dir():
            raise FerError(f"{class_folder}: expected only class folders ({names}) here")
        label = label_of.get(class_folder.name.lower())
        if label is None:
            raise FerError(f"{class_folder}: unknown class folder (expected {names}, or another spelling such "
                           "as anger/ or happiness/)")
        for path in _visible(class_folder):
            if not path.is_file():
                raise FerError(f"{path}: expected only image files in a class folder")
            yield path, label


def _visible(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if not path.name.startswith("."))


def read_class_folders(root: Path, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels (indices into `classes`) from root/<class>/..., each class folder read
    recursively for image files; a folder that names no class is left out, and all such folders are
    named in one warning. For scoring a model on any labelled faces (`fer evaluate --data`)."""
    from ferkit.imaging import IMAGE_SUFFIXES, image_files

    def images_in(folder: Path) -> list[Path]:
        return [path for path in image_files(folder) if not path.name.startswith(".")]

    label_of = class_folder_labels(classes)
    chosen, left_out = [], {}
    for folder in (child for child in _visible(root) if child.is_dir()):
        label = label_of.get(folder.name.lower())
        if label is None:
            left_out[folder.name] = len(images_in(folder))
        else:
            chosen.append((folder, label))
    if left_out:
        listed = ", ".join(f"{name} ({count} images)" for name, count in left_out.items())
        print(f"fer: warning: {root}: left out folders that name no emotion of the model: {listed}", file=sys.stderr)
    if not chosen:
        raise FerError(f"{root}: no class folders (expected names such as {', '.join(label_of)})")
    files = [(path, label) for folder, label in chosen for path in images_in(folder)]
    if not files:
        raise FerError(f"{root}: the class folders hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images, _ = load_images([path for path, _ in files])
    return images, np.array([label for _, label in files], np.int64)


def load_images(files: list[Path]) -> tuple[np.ndarray, int]:
    """48x48 grayscale images of the files, in order, and how many had to be converted; a file
    that is not a usable image is a one-line FerError naming it."""
    images = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    converted = 0
    for row, path in enumerate(files):
        images[row], was_converted = _load_image(path)
        converted += was_converted
    return images, converted


def _load_image(path: Path) -> tuple[np.ndarray, bool]:
    """The image as 48x48 grayscale, and whether it had to be converted to that."""
    # Imported here, not at the top, so that reading a CSV does not pay for importing OpenCV.
    from ferkit.imaging import BadImage, read_image, to_face48

    try:
        image = read_image(path, unchanged=True)
    except BadImage as problem:
        raise FerError(f"{path}: {problem}") from None
    if image.shape == (IMAGE_SIZE, IMAGE_SIZE) and image.dtype == np.uint8:
        return image, False
    return to_face48(image), True


def _hold_out(
    train_rows: np.ndarray, labels: np.ndarray, fraction: float, seed: int, root: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Split train rows into (train, valid), stratified by label; both keep file order."""
    from sklearn.model_selection import train_test_split  # only folders without PublicTest_ names need it

    try:
        keep, held = train_test_split(
            train_rows, test_size=fraction, random_state=seed, stratify=labels[train_rows])
    except ValueError as error:
        problem = f"cannot hold out a stratified {fraction:g} of train as valid ({error})"
        raise FerError(f"{root}: {problem}") from None
    return np.sort(keep), np.sort(held)

"""Reading FER-2013: the CSV parser's accepted quirks and rejections, and the image-folder readers."""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import (
    LABELS,
    USAGES,
    csv_lines,
    good_csv,
    gray_image,
    make_folder,
    prefixed_folder,
    sample_images,
    write_csv,
)
from ferkit.data import reading
from ferkit.data.reading import read_csv, read_folder, read_source
from ferkit.emotions import FER2013_CLASSES, IMAGE_SIZE, SPLITS
from ferkit.errors import FerError

USAGE_SPLIT = {"Training": "train", "PublicTest": "valid", "PrivateTest": "test"}
HEADER = "emotion,pixels,Usage"












def assert_matches_sample(data: reading.Dataset, images: np.ndarray | None = None) -> None:
    images = sample_images() if images is None else images
    for split in SPLITS:
        rows = [row for row, usage in enumerate(USAGES) if USAGE_SPLIT[usage] == split]
        assert data.images[split].dtype == np.uint8 and data.images[split].shape == (len(rows), 48, 48)
        assert data.labels[split].dtype == np.int64
        assert np.array_equal(data.images[split], images[rows])
        assert data.labels[split].tolist() == [LABELS[row] for row in rows]


def rejection(path: Path) -> str:
    with pytest.raises(FerError) as caught:
        read_source(path, valid_fraction=0.25, seed=0)
    message = str(caught.value)
    assert "\n" not in message
    return message


def replace_line(lines: list[str], number: int, old: str, new: str) -> list[str]:
    """Copy of `lines` with one substitution on the given 1-based line."""
    changed = list(lines)
    assert old in changed[number - 1]
    changed[number - 1] = changed[number - 1].replace(old, new, 1)
    return changed


# --- CSV: what it accepts -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["fer2013.csv", "fer2013.csv.gz", "FER2013.CSV"])
def test_plain_and_gzip_csv(tmp_path: Path, name: str) -> None:
    assert_matches_sample(read_source(good_csv(tmp_path, name), 0.1, 0))


def test_gzip_of_several_members(tmp_path: Path) -> None:
    text = ("\n".join(csv_lines(sample_images())) + "\n").encode()
    middle = len(text) // 2
    path = tmp_path / "fer2013.csv.gz"
    path.write_bytes(gzip.compress(text[:middle]) + gzip.compress(text[middle:]))
    assert_matches_sample(read_csv(path))


def test_crlf_line_endings(tmp_path: Path) -> None:
    assert_matches_sample(read_csv(write_csv(tmp_path / "a.csv", csv_lines(sample_images()), newline="\r\n",
                                             end="\r\n")))


def test_utf8_byte_order_mark(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", csv_lines(sample_images()), prefix=b"\xef\xbb\xbf")
    assert_matches_sample(read_csv(path))


def test_header_names_with_spaces_quotes_and_other_case(tmp_path: Path) -> None:
    lines = csv_lines(sample_images())
    lines[0] = ' emotion , "pixels",USAGE '
    assert_matches_sample(read_csv(write_csv(tmp_path / "a.csv", lines)))


@pytest.mark.parametrize("order", [("pixels", "emotion", "Usage"), ("Usage", "emotion", "pixels"),
                                   ("Usage", "pixels", "emotion")])
def test_columns_in_another_order(tmp_path: Path, order: tuple[str, ...]) -> None:
    lines = csv_lines(sample_images(), order=order)
    assert_matches_sample(read_csv(write_csv(tmp_path / "a.csv", lines, newline="\r\n")))


def test_quoted_fields(tmp_path: Path) -> None:
    lines = csv_lines(sample_images(), quote=True)
    lines[2] = replace_line(lines, 3, ",PublicTest", ', "PublicTest" ')[2].replace("0,", '"0",', 1)
    assert_matches_sample(read_csv(write_csv(tmp_path / "a.csv", lines)))


@pytest.mark.parametrize("end", ["\n\n\n", "\r\n\r\n", ""],
                         ids=["blank-lines", "blank-crlf", "no-final-newline"])
def test_file_endings(tmp_path: Path, end: str) -> None:
    path = write_csv(tmp_path / "a.csv", csv_lines(sample_images()), end=end)
    assert_matches_sample(read_csv(path))


def test_leading_zeros_are_still_pixels(tmp_path: Path) -> None:
    images = sample_images()
    lines = replace_line(csv_lines(images), 2, "0 255 7 ", "000 255 07 ")
    assert_matches_sample(read_csv(write_csv(tmp_path / "a.csv", lines)), images)


@pytest.mark.parametrize("block_bytes", [4096, 20_000])
def test_many_small_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int) -> None:
    """Blocks smaller than a row, and a few rows long: rows and line numbers survive every cut."""
    monkeypatch.setattr(reading, "_BLOCK_BYTES", block_bytes)
    images = sample_images()
    path = write_csv(tmp_path / "a.csv.gz", csv_lines(images))
    assert_matches_sample(read_csv(path), images)
    path = write_csv(tmp_path / "b.csv.gz", replace_line(csv_lines(images), 7, ",PrivateTest", ",Private"))
    assert "b.csv.gz: line 7: Usage 'Private'" in rejection(path)


# --- CSV: what it rejects, with the file, the line and the problem --------------------------------

@pytest.mark.parametrize(("header", "expected"), [
    ("label,pixels,Usage", "line 1: header column 'emotion' is missing"),
    ("emotion,pixels", "line 1: header column 'Usage' is missing"),
    ("emotion,pixels,Usage,pixels", "line 1: header column 'pixels' appears twice"),
    ("emotion,pixels,Usage,extra", "line 1: header must name exactly emotion, pixels, Usage"),
])
def test_bad_header(tmp_path: Path, header: str, expected: str) -> None:
    lines = csv_lines(sample_images())
    lines[0] = header
    assert f"a.csv: {expected}" in rejection(write_csv(tmp_path / "a.csv", lines))


def test_data_row_instead_of_header(tmp_path: Path) -> None:
    lines = csv_lines(sample_images())[1:]
    message = rejection(write_csv(tmp_path / "a.csv", lines))
    assert "a.csv: line 1: header column 'emotion' is missing" in message


@pytest.mark.parametrize(("old", "new", "expected"), [
    (" 7 ", " 7  ", "pixel 4 is empty"),
    ("0 255 7 ", "0 255 7x ", "pixel 3 is '7x', not an integer 0-255"),
    ("0 255 7 ", "0 255 -7 ", "pixel 3 is '-7', not an integer 0-255"),
    ("0 255 7 ", "0 255 7.5 ", "pixel 3 is '7.5', not an integer 0-255"),
    ("0 255 7 ", "0 256 7 ", "pixel 2 is '256', not an integer 0-255"),
    ("0 255 7 ", "0 1000 7 ", "pixel 2 is '1000', not an integer 0-255"),
    ("0 255 7 ", "0 0255 7 ", "pixel 2 is '0255', not an integer 0-255"),
    ("0 255 7 ", '0 255 "7 ', "pixel 3 is '\"7', not an integer 0-255"),
    ("0 255 7 ", "0 255 ", "has 2303 pixels, expected 2304"),
    ("0 255 7 ", "0 255 7 1 ", "has 2305 pixels, expected 2304"),
    ("3,0 255 7 ", "3, 0 255 7 ", "pixel 1 is empty"),
    ("3,", "7,", "emotion '7' is not a label 0-6"),
    ("3,", "-1,", "emotion '-1' is not a label 0-6"),
    ("3,", "happy,", "emotion 'happy' is not a label 0-6"),
    ("3,", ",", "emotion '' is not a label 0-6"),
    (",Training", ",Train", "Usage 'Train' is not one of Training, PublicTest, PrivateTest"),
    (",Training", ",Training,", "expected 3 comma-separated fields (emotion, pixels, Usage), found 4"),
    (",Training", "", "expected 3 comma-separated fields (emotion, pixels, Usage), found 2"),
])
def test_bad_row_names_its_line(tmp_path: Path, old: str, new: str, expected: str) -> None:
    lines = replace_line(csv_lines(sample_images()), 2, old, new)
    assert f"a.csv: line 2: {expected}" in rejection(write_csv(tmp_path / "a.csv", lines))


def test_bad_row_after_blank_lines_counts_them(tmp_path: Path) -> None:
    lines = csv_lines(sample_images())
    lines = lines[:3] + ["", ""] + replace_line(lines, 5, ",PrivateTest", ",Test")[3:]
    assert "a.csv: line 7: Usage 'Test'" in rejection(write_csv(tmp_path / "a.csv", lines, newline="\r\n"))


def test_empty_pixels_field(tmp_path: Path) -> None:
    lines = csv_lines(sample_images())
    lines[3] = "6,,Training"
    assert "a.csv: line 4: the pixels field is empty" in rejection(write_csv(tmp_path / "a.csv", lines))


def test_last_row_cut_off(tmp_path: Path) -> None:
    text = "\n".join(csv_lines(sample_images()))
    path = tmp_path / "a.csv"
    path.write_text(text[:-3000])
    message = rejection(path)
    assert "a.csv: line 8: expected 3 comma-separated fields" in message
    assert message.endswith("(the file ends in the middle of this line: truncated?)")


def test_truncated_gzip(tmp_path: Path) -> None:
    data = gzip.compress(("\n".join(csv_lines(sample_images())) + "\n").encode())
    path = tmp_path / "a.csv.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    assert "a.csv.gz: the gzip data ends early: truncated file?" in rejection(path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(("\n".join(csv_lines(sample_images())) + "\n").encode()))
    data[-8] ^= 0xFF  # the CRC
    path = tmp_path / "a.csv.gz"
    path.write_bytes(bytes(data))
    assert "a.csv.gz: corrupt gzip data" in rejection(path)


def test_gz_that_is_not_gzip(tmp_path: Path) -> None:
    path = good_csv(tmp_path, "plain.csv")
    assert "fake.csv.gz: not a gzip file" in rejection(path.rename(tmp_path / "fake.csv.gz"))


def test_gzip_data_named_csv(tmp_path: Path) -> None:
    path = good_csv(tmp_path, "a.csv.gz")
    assert "a.csv: this is gzip data; name it .csv.gz" in rejection(path.rename(tmp_path / "a.csv"))


def test_binary_file_named_csv(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(bytes(range(256)) * 4)
    assert "a.csv: binary data, not a CSV text file" in rejection(path)


def test_not_utf8_header(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"\xff\xfeemotion,pixels,Usage\n")
    assert "a.csv: line 1 is not UTF-8 text" in rejection(path)


def test_long_text_without_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("emotion," * 300_000)
    assert "a.csv: line 1: runs over 65536 bytes without a line break" in rejection(path)


@pytest.mark.parametrize("name", ["fer2013.txt", "fer2013.json", "fer2013.gz", "fer2013.csv.zip"])
def test_not_a_csv_name(tmp_path: Path, name: str) -> None:
    path = good_csv(tmp_path).rename(tmp_path / name)
    assert f"{name}: not a .csv, .csv.gz or image folder" in rejection(path)


def test_missing_path(tmp_path: Path) -> None:
    assert "nowhere.csv: no such file or folder" in rejection(tmp_path / "nowhere.csv")


@pytest.mark.parametrize(("lines", "expected"), [
    ([], "a.csv: empty file"),
    ([HEADER], "a.csv: no rows with Usage Training, so the train split would be empty"),
])
def test_no_rows(tmp_path: Path, lines: list[str], expected: str) -> None:
    path = tmp_path / "a.csv"
    path.write_text("\n".join(lines))
    assert expected in rejection(path)


def test_a_split_without_rows(tmp_path: Path) -> None:
    lines = [line for line in csv_lines(sample_images()) if not line.endswith("PublicTest")]
    message = rejection(write_csv(tmp_path / "a.csv", lines))
    assert "a.csv: no rows with Usage PublicTest, so the valid split would be empty" in message


def test_the_first_bad_line_is_reported(tmp_path: Path) -> None:
    lines = replace_line(csv_lines(sample_images()), 6, ",Training", ",Nope")
    lines = replace_line(lines, 4, " ", "  ")  # a pixel problem, found by a later check than Usage's
    assert "a.csv: line 4: pixel 2 is empty" in rejection(write_csv(tmp_path / "a.csv", lines))


# --- image folders -------------------------------------------------------------------------------







def test_folder_with_split_prefixes(tmp_path: Path) -> None:
    data = read_folder(prefixed_folder(tmp_path / "faces"), 0.1, 0)
    assert data.valid_from == "PublicTest" and data.converted == 0
    # sorted by class folder (angry, disgust, fear, happy, neutral, sad, surprise), then file name
    folder_order = sorted(range(len(FER2013_CLASSES)), key=lambda label: FER2013_CLASSES[label].lower())
    assert data.labels["train"].tolist() == [label for label in folder_order for _ in range(2)]
    assert data.labels["valid"].tolist() == folder_order
    assert data.labels["test"].tolist() == folder_order
    assert np.array_equal(data.images["train"][0], gray_image(1))  # Training_00 before Training_01
    assert np.array_equal(data.images["valid"][0], gray_image(2))
    assert np.array_equal(data.images["test"][0], gray_image(3))


def test_class_folders_in_any_case(tmp_path: Path) -> None:
    root = prefixed_folder(tmp_path / "faces")
    (root / "train" / "happy").rename(root / "train" / "HAPPY")
    (root / "test").rename(root / "Test")
    data = read_source(root, 0.1, 0)
    assert sorted(data.labels["train"].tolist()) == sorted(list(range(len(FER2013_CLASSES))) * 2)


def test_class_folders_in_other_spellings(tmp_path: Path) -> None:
    """The spellings `fer evaluate --data` accepts (emotions.CLASS_SPELLINGS), in any case."""
    root = prefixed_folder(tmp_path / "faces")
    for part, old, new in (("train", "happy", "happiness"), ("test", "happy", "Happiness"), ("train", "angry", "anger"),
                           ("test", "fear", "afraid"), ("test", "surprise", "SURPRISED")):
        (root / part / old).rename(root / part / new)
    data = read_source(root, 0.1, 0)
    assert sorted(data.labels["train"].tolist()) == sorted(list(range(len(FER2013_CLASSES))) * 2)
    assert sorted(data.labels["test"].tolist()) == list(range(len(FER2013_CLASSES)))


def test_a_folder_of_class_folders_is_not_an_image_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "faces", {"happiness/a.png": gray_image(5), "anger/b.png": gray_image(9)})
    assert "faces: an image folder holds train/ and test/, each with class folders" in rejection(root)
    images, labels = reading.read_class_folders(root, FER2013_CLASSES)  # what `fer evaluate --data` reads
    assert labels.tolist() == [FER2013_CLASSES.index("Angry"), FER2013_CLASSES.index("Happy")]


def unprefixed_folder(root: Path, per_class: int = 10) -> Path:
    files = {}
    for label, emotion in enumerate(FER2013_CLASSES):
        for index in range(per_class):
            files[f"train/{emotion.lower()}/im{index:02d}.png"] = gray_image(label * 20 + index)
        files[f"test/{emotion.lower()}/im0.png"] = gray_image(label * 20 + 15)
    return make_folder(root, files)


def test_folder_without_prefixes_holds_out_a_stratified_valid(tmp_path: Path) -> None:
    root = unprefixed_folder(tmp_path / "faces")
    data = read_folder(root, 0.2, seed=3)
    assert data.valid_from == "train"
    assert np.bincount(data.labels["valid"]).tolist() == [2] * len(FER2013_CLASSES)
    assert np.bincount(data.labels["train"]).tolist() == [8] * len(FER2013_CLASSES)
    assert np.bincount(data.labels["test"]).tolist() == [1] * len(FER2013_CLASSES)
    assert data.labels["train"].tolist() == sorted(data.labels["train"].tolist(),
                                                   key=lambda label: FER2013_CLASSES[label].lower())
    again, other = read_folder(root, 0.2, seed=3), read_folder(root, 0.2, seed=4)
    assert np.array_equal(again.images["valid"], data.images["valid"])
    assert not np.array_equal(other.images["valid"], data.images["valid"])
    every_train_image = np.concatenate([data.images["train"], data.images["valid"]])
    assert len({image.tobytes() for image in every_train_image}) == 7 * 10


def test_too_small_a_folder_for_a_stratified_valid(tmp_path: Path) -> None:
    root = unprefixed_folder(tmp_path / "faces", per_class=1)
    assert "cannot hold out a stratified 0.25 of train as valid" in rejection(root)


def test_other_images_are_converted_and_counted(tmp_path: Path) -> None:
    root = prefixed_folder(tmp_path / "faces")
    color = np.zeros((96, 64, 3), np.uint8)
    color[:, :, 2] = 200  # red, in OpenCV's BGR order
    color[10:40, 5:30] = (0, 255, 0)
    make_folder(root, {"train/sad/Training_99.png": color, "test/fear/PrivateTest_99.jpg": gray_image(90, 60)})
    data = read_folder(root, 0.1, 0)
    assert data.converted == 2
    expected = cv2.resize(cv2.cvtColor(color, cv2.COLOR_BGR2GRAY), (48, 48), interpolation=cv2.INTER_AREA)
    sad = FER2013_CLASSES.index("Sad")
    converted = data.images["train"][data.labels["train"] == sad][-1]
    assert converted.shape == (48, 48) and np.array_equal(converted, expected)


@pytest.mark.parametrize(("height", "width"), [(30, 100), (100, 30), (20, 20), (60, 200)])
def test_folder_images_are_resized_like_predicted_faces(tmp_path: Path, height: int, width: int) -> None:
    """One rule for both: area averaging only when no side grows, bilinear otherwise."""
    from ferkit.inference.detectors import whole_image
    from ferkit.inference.faces import find_faces

    image = np.random.default_rng(height).integers(0, 256, (height, width), dtype=np.uint8)
    root = make_folder(prefixed_folder(tmp_path / "faces"), {"train/sad/Training_99.png": image})
    data = read_folder(root, 0.1, 0)
    converted = data.images["train"][data.labels["train"] == FER2013_CLASSES.index("Sad")][-1]
    shrinking = height >= 48 and width >= 48
    expected = cv2.resize(image, (48, 48), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    assert np.array_equal(converted, expected)
    [(_, face)] = find_faces(image, whole_image)  # what `fer predict --detector none` classifies
    assert np.array_equal(face, expected)


def test_gray_jpeg_48x48_is_read_as_is(tmp_path: Path) -> None:
    root = prefixed_folder(tmp_path / "faces")
    make_folder(root, {"train/angry/Training_77.jpg": gray_image(100)})
    data = read_folder(root, 0.1, 0)
    assert data.converted == 0
    assert np.abs(data.images["train"][2].astype(int) - gray_image(100)).mean() < 8  # JPEG is lossy


def test_hidden_files_are_skipped(tmp_path: Path) -> None:
    hidden = {"train/angry/.DS_Store": b"\0\1", ".hidden/x": b""}
    root = make_folder(prefixed_folder(tmp_path / "faces"), hidden)
    assert len(read_folder(root, 0.1, 0).labels["train"]) == 14


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("train/fear/Training_5.jpg", b"not an image at all", "not an image"),
    ("test/happy/PublicTest_9.png", b"", "empty file"),
    ("train/sad/Training_7.png", b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR" + (100_000).to_bytes(4, "big") * 2,
     "header says 100000x100000 pixels, over the 50-megapixel limit")])
def test_undecodable_image(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    """Folders are read through the same checks as `fer predict`: header, size and pixel limit."""
    root = make_folder(prefixed_folder(tmp_path / "faces"), {name: content})
    assert f"{root / name}: {reason}" in rejection(root)


def test_unknown_class_folder(tmp_path: Path) -> None:
    root = make_folder(prefixed_folder(tmp_path / "faces"), {"train/contempt/Training_1.png": gray_image(5)})
    assert f"{root / 'train' / 'contempt'}: unknown class folder (expected angry, disgust" in rejection(root)


@pytest.mark.parametrize(("extra", "expected"), [
    ("train/Training_1.png", "expected only class folders"),
    ("train/sad/deeper/Training_1.png", "expected only image files in a class folder"),
    ("validation/sad/x.png", "unexpected folder"),
])
def test_unexpected_layout(tmp_path: Path, extra: str, expected: str) -> None:
    root = make_folder(prefixed_folder(tmp_path / "faces"), {extra: gray_image(5)})
    assert expected in rejection(root)


def test_folder_without_test(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "faces", {"train/sad/Training_1.png": gray_image(5)})
    assert f"{root}: an image folder needs train/ and test/ subfolders; test/ is missing" in rejection(root)


# --- the whole-block checks agree with the row-by-row explanation ---------------------------------

# The row format, written out here from the FER-2013 layout rather than taken from the parser:
# emotion 0-6 and a Usage name, each with optional spaces and quotes around it; the pixels field,
# optionally in one pair of quotes, holding exactly 2304 integers 0-255 of 1-3 digits each,
# separated by single spaces. Commas always separate fields (quotes do not protect them).
PIXELS_FIELD = re.compile(rf"[0-9]{{1,3}}(?: [0-9]{{1,3}}){{{IMAGE_SIZE * IMAGE_SIZE - 1}}}")


def reference_usage(field: str, any_usage: bool) -> str | None:
    """The Usage of a raw field: one of FER-2013's three, or with `any_usage` any text of up to 64
    characters (spaces and quotes around it trimmed) without control characters; None if bad."""
    usage = field.strip(' "')
    if not any_usage:
        return usage if usage in USAGE_SPLIT else None
    return usage if usage and len(field) <= 64 and min(map(ord, usage)) >= 0x20 else None


def reference_row(line: str, any_usage: bool = False) -> tuple[str, int, list[int]] | None:
    """(split, label, pixels) of one data line without its line ending, or None if it is bad; with
    `any_usage`, (Usage, label, pixels)."""
    if "\r" in line:  # a CR belongs to the line ending only; anywhere else it is a stray byte
        return None
    fields = next(csv.reader([line], quoting=csv.QUOTE_NONE))
    if len(fields) != 3:
        return None
    emotion, pixels, usage = fields[0].strip(' "'), fields[1], reference_usage(fields[2], any_usage)
    if emotion not in {str(label) for label in range(len(FER2013_CLASSES))} or usage is None:
        return None
    if len(pixels) >= 2 and pixels[0] == pixels[-1] == '"':
        pixels = pixels[1:-1]
    if not PIXELS_FIELD.fullmatch(pixels):
        return None
    values = [int(value) for value in pixels.split(" ")]
    return (usage if any_usage else USAGE_SPLIT[usage], int(emotion), values) if max(values) <= 255 else None


def reference_parse(data: bytes, any_usage: bool = False) -> tuple[int | None, dict[str, list[tuple[int, list[int]]]]]:
    """Line by line in plain Python: (first bad line, (label, pixels) per split, or with `any_usage`
    per Usage value, in order of first appearance)."""
    rows: dict[str, list[tuple[int, list[int]]]] = {} if any_usage else {split: [] for split in SPLITS}
    lines = data.decode("latin-1").split("\n")  # latin-1: every byte stays one character
    for number, line in enumerate(lines[1:], start=2):
        line = line.removesuffix("\r")
        if not line:
            continue
        row = reference_row(line, any_usage)
        if row is None:
            return number, rows
        split, label, values = row
        rows.setdefault(split, []).append((label, values))
    return None, rows


def damaged_copies(clean: bytes, rng: np.random.Generator, folder: Path,
                   trials: int = 25) -> Iterator[tuple[int, Path, bytes]]:
    """Copies of a CSV with one or two random bytes of its data rows replaced, inserted or deleted,
    each written to `folder`: (trial, its path, its bytes)."""
    header_end = clean.index(b"\n") + 1
    for trial in range(trials):
        data = bytearray(clean)
        for _ in range(int(rng.integers(1, 3))):
            at = int(rng.integers(header_end, len(data)))
            byte = bytes([int(rng.choice(list(b' ,"\r\n0123456789a-.\t\x00')))])
            edit = rng.integers(3)
            data[at:at + (edit > 0)] = byte if edit < 2 else b""
        path = folder / f"damaged{trial}.csv"
        path.write_bytes(bytes(data))
        yield trial, path, bytes(data)


@pytest.mark.parametrize("seed", range(6))
def test_random_damage_is_caught_exactly_where_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      seed: int) -> None:
    """Random byte edits to data rows: the parser must either return exactly what a line-by-line
    reading gives, or name the same first bad line; never anything else."""
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(reading, "_BLOCK_BYTES", int(rng.choice([9000, 30_000, 1 << 20])))
    clean = ("\n".join(csv_lines(sample_images(seed=seed))) + "\n").encode()
    for trial, path, data in damaged_copies(clean, rng, tmp_path):
        bad_line, rows = reference_parse(data)
        if b"\0" in data[:4096]:
            with pytest.raises(FerError, match="binary data, not a CSV text file"):
                read_csv(path)
        elif bad_line is not None:
            with pytest.raises(FerError, match=f"damaged{trial}.csv: line {bad_line}: "):
                read_csv(path)
        elif all(rows.values()):
            result = read_csv(path)
            for split in SPLITS:
                assert result.labels[split].tolist() == [label for label, _ in rows[split]]
                assert result.images[split].reshape(-1, 2304).tolist() == [values for _, values in rows[split]]
        else:  # every line is good, but none is left for some split
            with pytest.raises(FerError, match=f"damaged{trial}.csv: no rows with Usage .* split would be empty"):
                read_csv(path)


@pytest.mark.parametrize("seed", range(3))
def test_random_damage_with_any_usage_is_caught_exactly_where_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    seed: int) -> None:
    """The same for read_csv_usages, which takes any Usage text, on rows whose Usage is short text."""
    rng = np.random.default_rng(100 + seed)
    monkeypatch.setattr(reading, "_BLOCK_BYTES", int(rng.choice([9000, 30_000, 1 << 20])))
    usages = ["Test", "Dev", "Test", "x", "Dev", "Test", "Other"]
    clean = ("\n".join(replace_usages(csv_lines(sample_images(seed=seed)), usages)) + "\n").encode()
    for trial, path, data in damaged_copies(clean, rng, tmp_path):
        bad_line, rows = reference_parse(data, any_usage=True)
        if b"\0" in data[:4096]:
            with pytest.raises(FerError, match="binary data, not a CSV text file"):
                reading.read_csv_usages(path)
        elif bad_line is not None:
            with pytest.raises(FerError, match=f"damaged{trial}.csv: line {bad_line}: "):
                reading.read_csv_usages(path)
        else:
            result = reading.read_csv_usages(path)
            assert result.usage_names == tuple(rows)
            for code, usage in enumerate(result.usage_names):
                chosen = result.usages == code
                assert result.labels[chosen].tolist() == [label for label, _ in rows[usage]]
                assert result.images[chosen].reshape(-1, 2304).tolist() == [values for _, values in rows[usage]]


# --- CSV with any Usage values (fer evaluate --data) ----------------------------------------------

def replace_usages(lines: list[str], usages: list[str]) -> list[str]:
    """The header, then each data line with its Usage (the last field) replaced."""
    return [lines[0], *(line.rsplit(",", 1)[0] + "," + usage for line, usage in zip(lines[1:], usages, strict=True))]


@pytest.mark.parametrize("block_bytes", [9000, 1 << 20])
def test_any_usage_values_in_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int) -> None:
    monkeypatch.setattr(reading, "_BLOCK_BYTES", block_bytes)  # small blocks: the threads meet values out of order
    usages = ["Test", "Test", "Validation", "Test", "Training", "Validation", "PrivateTest"]
    path = write_csv(tmp_path / "a.csv.gz", replace_usages(csv_lines(sample_images()), usages))
    rows = reading.read_csv_usages(path)
    assert rows.usage_names == ("Test", "Validation", "Training", "PrivateTest")
    assert [rows.usage_names[code] for code in rows.usages] == usages
    assert np.array_equal(rows.images, sample_images()) and rows.labels.tolist() == list(LABELS)
    assert rows.lines.tolist() == list(range(2, 2 + len(usages)))


def test_fer2013_usages_are_read_as_they_are(tmp_path: Path) -> None:
    rows = reading.read_csv_usages(good_csv(tmp_path))
    assert rows.usage_names == ("Training", "PublicTest", "PrivateTest")
    assert [rows.usage_names[code] for code in rows.usages] == list(USAGES)


@pytest.mark.parametrize(("usage", "expected"), [
    ("", "line 3: the Usage field is empty"),
    ('""', "line 3: the Usage field is empty"),
    ("x" * 65, "line 3: the Usage field is over 64 characters long"),
    ("Te\tst", "line 3: Usage 'Te\\tst' holds a control character"),
])
def test_bad_usage_text_names_its_line(tmp_path: Path, usage: str, expected: str) -> None:
    usages = ["Test", usage, *["Test"] * (len(USAGES) - 2)]
    path = write_csv(tmp_path / "a.csv", replace_usages(csv_lines(sample_images()), usages))
    with pytest.raises(FerError, match=re.escape(f"a.csv: {expected}")):
        reading.read_csv_usages(path)


def test_preprocess_still_refuses_other_usage_values(tmp_path: Path) -> None:
    usages = ["Training", "PublicTest", "PrivateTest", "Test", "Training", "PublicTest", "PrivateTest"]
    path = write_csv(tmp_path / "a.csv", replace_usages(csv_lines(sample_images()), usages))
    assert "a.csv: line 5: Usage 'Test' is not one of Training, PublicTest, PrivateTest" in rejection(path)

"""Reading image files and turning them into 48x48 grayscale faces, for training folders and for photos.

`fer preprocess` (image folders) and `fer predict` both read through `read_image`, and both turn
pixels into the model's input size through `to_face48`. Reading is defensive: the size is read
from the file header and checked before anything is decoded (a 100000x100000 PNG is a few
hundred bytes on disk), and every problem becomes a `BadImage` whose message is a short reason.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from ferkit.emotions import IMAGE_SIZE

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MAX_PIXELS = 50_000_000
MAX_FILE_BYTES = 512 * 1024 * 1024

# OpenCV's log prefix, e.g. "[ WARN:0@3.9] global grfmt_png.cpp:793 readFromStreamOrBuffer ".
_OPENCV_LOG_PREFIX = re.compile(r"^\[\s*\w+:[\d@.]+\]\s+global\s+\S+\s+\S+\s+")
_STDERR_LOCK = threading.Lock()


class BadImage(Exception):
    """A file that cannot be used as an image; the message is the reason, without the file name."""


def _number(data: bytes, start: int, size: int, order: str, signed: bool = False) -> int:
    if start + size > len(data):
        raise BadImage("truncated image header")
    return int.from_bytes(data[start:start + size], order, signed=signed)


def _png_size(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise BadImage("corrupt PNG header")
    return _number(data, 16, 4, "big"), _number(data, 20, 4, "big")


_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_JPEG_FRAME_HEADERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn; C4/C8/CC are other tables


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walk the marker segments to the frame header, and check the scan that follows is complete."""
    size, pos = None, 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise BadImage("corrupt JPEG (bad segment marker)")
        marker = data[pos + 1]
        if marker == 0xFF or marker in _JPEG_STANDALONE:  # fill byte, or a marker without a length
            pos += 1 if marker == 0xFF else 2
            continue
        length = _number(data, pos + 2, 2, "big")
        if marker in _JPEG_FRAME_HEADERS:
            size = _number(data, pos + 7, 2, "big"), _number(data, pos + 5, 2, "big")
        elif marker == 0xDA:  # start of scan: compressed data runs to the end-of-image marker
            if size is None:
                raise BadImage("corrupt JPEG (scan before frame header)")
            # Scan data escapes every 0xFF byte, so FFD9 past this point can only be the real end.
            if data.find(b"\xff\xd9", pos + 2 + length) < 0:
                raise BadImage("truncated JPEG (no end-of-image marker)")
            return size
        elif marker == 0xD9:
            break
        pos += 2 + length
    raise BadImage("truncated JPEG (no image data)")


def _bmp_size(data: bytes) -> tuple[int, int]:
    if _number(data, 14, 4, "little") == 12:  # the old OS/2 header stores 16-bit sizes
        return _number(data, 18, 2, "little"), _number(data, 20, 2, "little")
    width = _number(data, 18, 4, "little", signed=True)
    height = _number(data, 22, 4, "little", signed=True)
    return width, abs(height)  # a negative height means rows are stored top-down


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the frame tag and start code
        return _number(data, 26, 2, "little") & 0x3FFF, _number(data, 28, 2, "little") & 0x3FFF
    if chunk == b"VP8L":  # lossless: two 14-bit (size - 1) fields packed after a signature byte
        bits = _number(data, 21, 4, "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: two 24-bit (size - 1) fields
        return _number(data, 24, 3, "little") + 1, _number(data, 27, 3, "little") + 1
    raise BadImage("unsupported WebP variant")


def _tiff_size(data: bytes) -> tuple[int, int]:
    """Width and height tags of the first image directory, the one OpenCV decodes."""
    order = "little" if data[:2] == b"II" else "big"
    directory = _number(data, 4, 4, order)
    sizes: dict[int, int] = {}
    for entry in range(directory + 2, directory + 2 + 12 * _number(data, directory, 2, order), 12):
        tag, kind = _number(data, entry, 2, order), _number(data, entry + 2, 2, order)
        if tag in (256, 257):  # ImageWidth, ImageLength; type 3 is SHORT, 4 is LONG
            sizes[tag] = _number(data, entry + 8, 2 if kind == 3 else 4, order)
    if len(sizes) < 2:
        raise BadImage("corrupt TIFF (no image size)")
    return sizes[256], sizes[257]


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header of a JPEG, PNG, BMP, WebP or TIFF file, without decoding."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_size(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data.startswith(b"BM"):
        return _bmp_size(data)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(data)
    raise BadImage("not an image (not JPEG, PNG, BMP, WebP or TIFF)")


def _decode(data: bytes, flags: int) -> tuple[np.ndarray | None, str]:
    """Decode to BGR, catching what libpng and OpenCV print straight to file descriptor 2.

    Those messages would add lines to the one-line warning a bad file gets; instead the first of
    them becomes part of that warning. File descriptor 2 belongs to the whole process, so threads
    (`fer serve` decodes uploads on several) take turns: interleaved redirections would leave
    stderr pointing at another thread's closed sink.
    """
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
            except cv2.error:
                image = None
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            sink.seek(0)
            complaints = sink.read(4096).decode("utf-8", "replace").strip().splitlines()
    return image, _OPENCV_LOG_PREFIX.sub("", complaints[0].strip()) if complaints else ""


def decode_image(data: bytes, unchanged: bool = False) -> np.ndarray:
    """An encoded image (the bytes of a file or an upload) as `read_image` returns it; the format
    is sniffed from the bytes and the header's size checked before anything is decoded."""
    if not data:
        raise BadImage("empty file")
    width, height = image_size(data)
    if width <= 0 or height <= 0:
        raise BadImage(f"corrupt header (size {width}x{height})")
    if width * height > MAX_PIXELS:
        raise BadImage(f"header says {width}x{height} pixels, over the {MAX_PIXELS // 10**6}-megapixel"
                       " limit (a decompression bomb?); not decoded")
    image, complaint = _decode(data, cv2.IMREAD_UNCHANGED if unchanged else cv2.IMREAD_COLOR)
    if image is None:
        raise BadImage(f"cannot decode ({complaint or 'corrupt or truncated image data'})")
    return image


def read_image(path: Path, unchanged: bool = False) -> np.ndarray:
    """The image as BGR uint8 (H, W, 3), or with `unchanged` as stored (gray, alpha, 16-bit kept);
    raises BadImage with the reason it cannot be used."""
    try:
        size = path.stat().st_size
        if size == 0:
            raise BadImage("empty file")
        if size > MAX_FILE_BYTES:
            raise BadImage(f"file is over {MAX_FILE_BYTES // 2**20} MB")
        data = path.read_bytes()
    except OSError as error:
        raise BadImage(f"cannot read ({error.strerror or error})") from None
    return decode_image(data, unchanged)


def image_files(folder: Path, exclude: Iterable[Path] = (), suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files (or files with other `suffixes`) under `folder`, recursively and sorted; symlinked
    folders are not followed, nor are the (resolved) folders `exclude` when they lie inside."""
    excluded = tuple(exclude)
    files = []
    for directory, subdirectories, names in os.walk(folder):
        if any(Path(directory).resolve().is_relative_to(skip) for skip in excluded):
            subdirectories.clear()
            continue
        files += [Path(directory, name) for name in names if Path(name).suffix.lower() in suffixes]
    return sorted(files)


def to_gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def to_face48(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, gray+alpha, BGR or BGRA; 8-bit, 16-bit or float) as 48x48 uint8 gray.

    The one conversion rule for training folders (fer preprocess) and faces to classify (fer
    predict), so the model sees images resized the same way in both.
    """
    if image.dtype != np.uint8:  # 16-bit or float images: scale their full range to 0-255
        top = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else 1.0
        image = cv2.convertScaleAbs(image, alpha=255.0 / top)
    channels = image.shape[2] if image.ndim == 3 else 1
    if channels in (1, 2):  # gray, or gray and alpha
        image = image.reshape(*image.shape[:2], channels)[:, :, 0]
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if channels == 4 else cv2.COLOR_BGR2GRAY)
    if image.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return np.ascontiguousarray(image)
    return cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=_resize_method(image.shape))


def _resize_method(shape: tuple[int, ...]) -> int:
    """Area averaging when no side grows (it does not alias); bilinear otherwise, because
    OpenCV's INTER_AREA falls back to near nearest-neighbour, blocky, as soon as one side grows."""
    shrinking = shape[0] >= IMAGE_SIZE and shape[1] >= IMAGE_SIZE
    return cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR

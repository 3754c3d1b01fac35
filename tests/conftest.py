"""Shared by the tests: where the real FER-2013 data sits, a marker that skips without it, and the
small hand-made datasets (CSV rows, image folders, arrays) that several test modules build."""

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from ferkit.emotions import FER2013_CLASSES, IMAGE_SIZE, LABEL_SETS

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"the real FER-2013 data is not at {SHARED_DATA} (a fresh clone has none)")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the environment's dvc and fer


def committed_params_text() -> str:
    """params.yaml as committed, so tests do not depend on a user's local experiments with it."""
    shown = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=REPO, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else (REPO / "params.yaml").read_text()


# Seven rows with mixed usages, so file order within a split is tested too.
USAGES = ("Training", "PublicTest", "Training", "PrivateTest", "Training", "PrivateTest", "PublicTest")
LABELS = (3, 0, 6, 1, 4, 5, 2)


def sample_images(count: int = len(USAGES), seed: int = 0) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 256, (count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    images[0, 0, :3] = (0, 255, 7)  # the extremes and a one-digit value, in every sample
    return images


def pixel_text(image: np.ndarray) -> str:
    return " ".join(map(str, image.ravel().tolist()))


def csv_lines(images: np.ndarray, order: tuple[str, ...] = ("emotion", "pixels", "Usage"),
              quote: bool = False) -> list[str]:
    lines = [",".join(order)]
    for image, label, usage in zip(images, LABELS, USAGES):
        pixels = f'"{pixel_text(image)}"' if quote else pixel_text(image)
        fields = {"emotion": str(label), "pixels": pixels, "Usage": usage}
        lines.append(",".join(fields[name] for name in order))
    return lines


def write_csv(path: Path, lines: list[str], newline: str = "\n", end: str = "\n", prefix: bytes = b"") -> Path:
    data = prefix + (newline.join(lines) + end).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def good_csv(folder: Path, name: str = "fer2013.csv", images: np.ndarray | None = None) -> Path:
    return write_csv(folder / name, csv_lines(sample_images() if images is None else images))


def gray_image(value: int, size: int = IMAGE_SIZE) -> np.ndarray:
    image = np.full((size, size), value, np.uint8)
    image[::7, ::5] = 255 - value  # some texture, so no image is constant
    return image


def make_folder(root: Path, files: dict[str, np.ndarray | bytes]) -> Path:
    """Write images (PNG or JPEG by extension) or raw bytes at paths relative to root."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            assert cv2.imwrite(str(path), content)
    return root


def prefixed_folder(root: Path) -> Path:
    files = {}
    for label, emotion in enumerate(FER2013_CLASSES):
        folder = emotion.lower()
        files[f"train/{folder}/Training_{label}1.png"] = gray_image(10 * label)
        files[f"train/{folder}/Training_{label}0.png"] = gray_image(10 * label + 1)
        files[f"test/{folder}/PublicTest_{label}.png"] = gray_image(10 * label + 2)
        files[f"test/{folder}/PrivateTest_{label}.png"] = gray_image(10 * label + 3)
    return make_folder(root, files)


def write_classes(folder: Path, label_set: str = "fer2013") -> None:
    """classes.json, as preprocess writes it beside the arrays."""
    from ferkit.data.arrays import CLASSES_FILE, classes_json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / CLASSES_FILE).write_text(json.dumps(classes_json(label_set, LABEL_SETS[label_set])))


def write_arrays(folder: Path, sizes: dict[str, int], seed: int = 0, label_set: str = "fer2013") -> None:
    """Small learnable arrays: each class is a bright square at its own position, plus noise; with
    classes.json, and soft training targets that put 0.8 on the label (as preprocess writes them)."""
    from ferkit.data.arrays import PROBABILITIES_FILE

    classes = LABEL_SETS[label_set]
    rng = np.random.default_rng(seed)
    write_classes(folder, label_set)
    for split, count in sizes.items():
        labels = rng.integers(0, len(classes), count).astype(np.int64)
        images = rng.integers(0, 90, (count, 48, 48)).astype(np.uint8)
        for index, label in enumerate(labels):
            images[index, 4 + 5 * label: 12 + 5 * label, 10:30] = 220
        np.save(folder / f"{split}_images.npy", images)
        np.save(folder / f"{split}_labels.npy", labels)
        if split == "train":
            targets = np.full((count, len(classes)), 0.2 / (len(classes) - 1), np.float32)
            targets[np.arange(count), labels] = 0.8
            np.save(folder / PROBABILITIES_FILE, targets)


def write_untrained_checkpoint(path: Path, model: str = "basic", seed: int = 0) -> Path:
    """An untrained network: its seeded He-initialised weights give spread, repeatable outputs."""
    import torch

    from ferkit.models.checkpoint import save_checkpoint
    from ferkit.models.networks import build_model

    torch.manual_seed(seed)
    weights = build_model(model, len(FER2013_CLASSES)).state_dict()
    save_checkpoint(path, {"model": model, "dropout": 0.0, "state_dict": weights, "mean": 0.5, "std": 0.25})
    return path


def dvc(repo: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([str(BIN / "dvc"), *args], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def set_params(repo: Path, changes: dict[str, dict]) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for block, values in changes.items():
        params[block].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def make_pipeline_repo(repo: Path, profile: dict[str, dict]) -> Path:
    """A git + DVC repository holding this checkout's pipeline and code, `profile` laid over the
    committed params.yaml, and `dvc repro` run once."""
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, repo / name)
    (repo / "params.yaml").write_text(committed_params_text())
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "test@example.invalid")
    git(repo, "config", "user.name", "test")
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.analytics", "false")
    set_params(repo, profile)
    dvc(repo, "repro")
    return repo


def png_claiming(width: int, height: int) -> bytes:
    """A structurally valid, tiny PNG whose header claims width x height pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")

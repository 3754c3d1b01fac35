"""`fer predict`: files and folders, face detection in a scene, bad files, JSON and annotated output."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA, png_claiming, requires_shared_data, write_untrained_checkpoint
from ferkit.choices import default_detector
from ferkit.cli import main
from ferkit.emotions import FER2013_CLASSES
from ferkit.imaging import BadImage, image_size, read_image
from ferkit.inference.detectors import haar_detector

SAMPLE = SHARED_DATA / "fer2013-images-sample"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained basic net: its seeded He-initialised weights give spread, repeatable outputs."""
    return write_untrained_checkpoint(tmp_path_factory.mktemp("model") / "basic.pt")


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """A gradient plus noise: a plausible photo background that holds no face."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    base = 60 + 100 * cols / width + 40 * rows / height
    return np.clip(base + rng.normal(0, 6, (height, width)), 0, 255).astype(np.uint8)


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def predict_json(paths: list[Path], model: Path, *extra: str, capfd: pytest.CaptureFixture
                 ) -> tuple[int, dict, str]:
    code = main(["predict", *map(str, paths), "--model", str(model), "--json", "-", *extra])
    out, err = capfd.readouterr()
    return code, json.loads(out), err


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    overlap_x = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    overlap_y = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = overlap_x * overlap_y
    return inter / (aw * ah + bw * bh - inter)


@requires_shared_data
def test_sample_folder_without_detector_gives_one_face_per_image(checkpoint, capfd):
    code, result, err = predict_json([SAMPLE], checkpoint, "--detector", "none", "--batch-size", "32", capfd=capfd)
    assert code == 0 and "warning" not in err
    assert len(result["images"]) == 140 == result["summary"]["images"]
    assert all(len(image["faces"]) == 1 for image in result["images"])
    assert {image["faces"][0]["box"]["w"] for image in result["images"]} == {48}
    assert len({image["faces"][0]["emotion"] for image in result["images"]}) > 1


def _detectable_faces(count: int, side: int) -> list[np.ndarray]:
    """Sample faces, one per emotion folder, that Haar finds when shown alone at `side` pixels."""
    detect, faces = haar_detector(), []
    for folder in sorted((SAMPLE / "train").iterdir()):
        for file in sorted(folder.glob("*.jpg")):
            face = cv2.resize(cv2.imread(str(file), cv2.IMREAD_GRAYSCALE), (side, side),
                              interpolation=cv2.INTER_CUBIC)
            patch = smooth_image(side + 80, side + 80, seed=1)
            patch[40:40 + side, 40:40 + side] = face
            if len(detect(patch)) == 1:
                faces.append(face)
                break
        if len(faces) == count:
            return faces
    pytest.fail(f"fewer than {count} sample faces are detectable")


@requires_shared_data
def test_scene_faces_are_found_where_they_were_pasted(checkpoint, tmp_path, capfd):
    spots = [(40, 40, 150), (330, 50, 130), (70, 290, 140), (420, 280, 160)]  # x, y, side
    scene = smooth_image(480, 640, seed=0)
    for face, (x, y, side) in zip(_detectable_faces(len(spots), 140), spots):
        scene[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    path = write(tmp_path / "scene.png", cv2.cvtColor(scene, cv2.COLOR_GRAY2BGR))
    code, result, _ = predict_json([path], checkpoint, "--detector", "haar", capfd=capfd)  # faces Haar finds
    assert code == 0
    boxes = [tuple(face["box"][key] for key in "xywh") for face in result["images"][0]["faces"]]
    assert len(spots) <= len(boxes) <= len(spots) + 1
    for x, y, side in spots:
        assert max(iou((x, y, side, side), box) for box in boxes) > 0.3, (x, y, side, boxes)


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG with its frame header's size rewritten."""
    data = bytearray(cv2.imencode(".jpg", smooth_image(32, 32, seed=2))[1].tobytes())
    frame = data.index(b"\xff\xc0")
    data[frame + 5:frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_header_sizes_are_read_without_decoding():
    image = smooth_image(30, 50, seed=3)
    for suffix in (".png", ".jpg", ".bmp", ".webp", ".tif"):
        assert image_size(cv2.imencode(suffix, image)[1].tobytes()) == (50, 30), suffix
    assert image_size(png_claiming(100_000, 100_000)) == (100_000, 100_000)
    assert image_size(_jpeg_claiming(60_000, 50_000)) == (60_000, 50_000)


def test_bad_files_are_skipped_with_one_warning_each(checkpoint, tmp_path, capfd):
    good = [write(tmp_path / "in" / f"good{index}.png", smooth_image(48, 48, seed=index)) for index in range(2)]
    jpeg = cv2.imencode(".jpg", smooth_image(200, 200, seed=4))[1].tobytes()
    png = cv2.imencode(".png", smooth_image(200, 200, seed=5))[1].tobytes()
    bad = {
        "notes.jpg": b"these are not pixels\n",
        "empty.png": b"",
        "truncated.jpg": jpeg[:len(jpeg) // 2],
        "truncated.png": png[:len(png) // 2],
        "bomb.png": png_claiming(100_000, 100_000),
        "bomb.jpg": _jpeg_claiming(60_000, 50_000),
    }
    for name, data in bad.items():
        (tmp_path / "in" / name).write_bytes(data)
    (tmp_path / "in" / "README.txt").write_text("not an image suffix: ignored in folders\n")
    code, result, err = predict_json([tmp_path / "in"], checkpoint, "--detector", "none", capfd=capfd)
    assert code == 1
    assert sorted(Path(image["path"]).name for image in result["images"]) == [path.name for path in good]
    lines = err.strip().splitlines()
    assert len(lines) == len(bad), err
    for name in bad:
        assert sum(line.startswith(f"fer: warning: {tmp_path / 'in' / name}: ") for line in lines) == 1, err
    assert "megapixel" in err and "truncated JPEG" in err and "empty file" in err
    assert {Path(item["path"]).name for item in result["failed"]} == set(bad)


def test_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(100_000, 100_000))
    monkeypatch.setattr(cv2, "imdecode", lambda *args: pytest.fail("decoded a bomb"))
    with pytest.raises(BadImage, match="100000x100000"):
        read_image(path)


@pytest.mark.parametrize("missing", ["path", "model"])
def test_missing_path_or_model_is_a_usage_error(checkpoint, tmp_path, capfd, missing):
    image = write(tmp_path / "face.png", smooth_image(48, 48, seed=0))
    path = tmp_path / "nope.jpg" if missing == "path" else image
    model = tmp_path / "nope.pt" if missing == "model" else checkpoint
    assert main(["predict", str(path), "--model", str(model)]) == 2
    out, err = capfd.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"fer: error: {tmp_path / 'nope'}")


def test_json_schema_and_table(checkpoint, tmp_path, capfd):
    write(tmp_path / "face.png", smooth_image(48, 48, seed=0))
    write(tmp_path / "empty.jpg", smooth_image(120, 160, seed=1))
    code, result, _ = predict_json([tmp_path / "face.png", tmp_path / "empty.jpg"], checkpoint, capfd=capfd)
    assert code == 0
    assert set(result) == {"model", "detector", "tta", "emotions", "images", "videos", "video_options", "failed",
                           "summary"}
    assert result["videos"] == [] and result["summary"]["videos"] == 0
    assert result["emotions"] == list(FER2013_CLASSES) and result["detector"] == default_detector()
    assert result["images"][1] == {"path": str(tmp_path / "empty.jpg"), "width": 160, "height": 120, "faces": []}

    assert main(["predict", str(tmp_path / "face.png"), "--model", str(checkpoint), "--detector", "none",
                 "--tta", "flip", "--json", str(tmp_path / "out.json")]) == 0
    table = capfd.readouterr().out
    face = json.loads((tmp_path / "out.json").read_text())["images"][0]["faces"][0]
    assert face["box"] == {"x": 0, "y": 0, "w": 48, "h": 48}
    assert list(face["probabilities"]) == list(FER2013_CLASSES)
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert face["emotion"] == max(face["probabilities"], key=face["probabilities"].get)
    assert table.splitlines()[0].split()[:4] == ["image", "face", "box", "x,y,w,h"]
    assert face["emotion"] in table.splitlines()[1]


def test_annotate_keeps_names_folders_and_sizes(checkpoint, tmp_path, capfd):
    colour = cv2.cvtColor(smooth_image(90, 130, seed=1), cv2.COLOR_GRAY2BGR)
    inputs = [write(tmp_path / "in" / "a.png", smooth_image(48, 48, seed=0)),
              write(tmp_path / "in" / "sub" / "b.jpg", colour)]
    code = main(["predict", str(tmp_path / "in"), "--model", str(checkpoint), "--detector", "none",
                 "--annotate", str(tmp_path / "out")])
    capfd.readouterr()
    assert code == 0
    for source in inputs:
        drawn = cv2.imread(str(tmp_path / "out" / source.relative_to(tmp_path / "in")), cv2.IMREAD_COLOR)
        original = cv2.imread(str(source), cv2.IMREAD_COLOR)
        assert drawn.shape == original.shape
        assert not np.array_equal(drawn, original)
    assert sorted(path.name for path in (tmp_path / "out").rglob("*")) == ["a.png", "b.jpg", "sub"]


def test_annotate_never_overwrites_inputs_nor_reads_its_own_output(checkpoint, tmp_path, capfd):
    write(tmp_path / "in" / "a.png", smooth_image(48, 48, seed=0))
    options = ["--model", str(checkpoint), "--detector", "none"]
    for _ in range(2):
        code, result, _ = predict_json([tmp_path / "in"], checkpoint, "--detector", "none",
                                       "--annotate", str(tmp_path / "in" / "drawn"), capfd=capfd)
        assert code == 0 and [Path(image["path"]).name for image in result["images"]] == ["a.png"]
    assert main(["predict", str(tmp_path / "in"), *options, "--annotate", str(tmp_path / "in")]) == 2
    assert "would overwrite it" in capfd.readouterr().err

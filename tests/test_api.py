"""The Python API, ferkit.Analyzer: every input type, channel order, no face, batches, video tables, evaluation,
pickling, threads and bad input; and the examples of docs/api.md, run as doctests."""

from __future__ import annotations

import doctest
import json
import pickle
import re
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, SHARED_DATA, good_csv, requires_shared_data, write_untrained_checkpoint
from ferkit import Analyzer, Face, FerError
from ferkit.cli import main
from ferkit.emotions import FER2013_CLASSES
from test_serve import face_scene
from test_video import _video_benchmark, write_clip

DOC = REPO / "docs" / "api.md"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("model") / "basic.pt")


@pytest.fixture(scope="module")
def analyzer(checkpoint: Path) -> Analyzer:
    """The default detector, on synthetic scenes it finds a face in."""
    return Analyzer(checkpoint)


@pytest.fixture(scope="module")
def whole(checkpoint: Path) -> Analyzer:
    """detector "none": each image is one face, so results do not hang on detection."""
    return Analyzer(checkpoint, detector="none")


def tinted(bgr: np.ndarray) -> np.ndarray:
    """Red weaker than blue, so that reading the channels in the wrong order changes the gray pixels."""
    return (bgr * np.array([1.0, 0.9, 0.55])).round().astype(np.uint8)


def encode(image: np.ndarray, suffix: str = ".png") -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def assert_same(found: list[list[Face]], expected: list[list[Face]]) -> None:
    """Boxes and classes equal; probabilities to float error (a batch's size may change the kernels)."""
    assert [[face.box for face in faces] for faces in found] == [[face.box for face in faces] for faces in expected]
    for faces, others in zip(found, expected):
        for face, other in zip(faces, others):
            assert face.classes == other.classes and face.track == other.track
            assert np.allclose(face.probabilities, other.probabilities, atol=1e-6)


def test_every_input_type_gives_the_same_faces(analyzer, tmp_path):
    photo = tinted(face_scene())
    path = tmp_path / "photo.png"
    path.write_bytes(encode(photo))
    expected = analyzer.analyze(photo, channels="bgr")
    assert len(expected) == 1
    rgb = photo[:, :, ::-1]  # a view with a negative stride, as users make them
    inputs = {"str path": str(path), "Path": path, "bytes": path.read_bytes(), "bytearray": bytearray(encode(photo)),
              "rgb": (rgb, "rgb"), "bgra": (cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA), "bgr"),
              "rgba": (cv2.cvtColor(photo, cv2.COLOR_BGR2RGBA), "rgb")}
    for name, given in inputs.items():
        image, channels = given if isinstance(given, tuple) else (given, None)
        assert analyzer.analyze(image, channels=channels) == expected, name


def test_pil_images_are_read_in_their_own_channel_order(analyzer, tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    photo = tinted(face_scene())
    path = tmp_path / "photo.png"
    path.write_bytes(encode(photo))
    expected = analyzer.analyze(photo, channels="bgr")
    with image_module.open(path) as opened:
        assert analyzer.analyze(opened) == expected
    from_array = image_module.fromarray(np.ascontiguousarray(photo[:, :, ::-1]))
    assert analyzer.analyze(from_array) == expected
    assert analyzer.analyze(from_array, channels="bgr") == expected  # PIL's mode names the order, not `channels`
    assert analyzer.analyze(from_array.convert("RGBA")) == expected
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    assert analyzer.analyze(image_module.fromarray(gray)) == analyzer.analyze(gray)


def test_the_channel_order_named_is_the_one_used(whole):
    photo = tinted(face_scene())
    [as_bgr] = whole.analyze(photo, channels="bgr")
    [swapped_read_as_rgb] = whole.analyze(np.ascontiguousarray(photo[:, :, ::-1]), channels="rgb")
    [misnamed] = whole.analyze(photo, channels="rgb")
    assert as_bgr == swapped_read_as_rgb
    assert np.abs(misnamed.probabilities - as_bgr.probabilities).max() > 1e-4  # the gray pixels differ


def test_grayscale_arrays_need_no_channel_order(whole):
    gray = cv2.cvtColor(face_scene(), cv2.COLOR_BGR2GRAY)
    expected = whole.analyze(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), channels="bgr")
    assert whole.analyze(gray) == expected
    assert whole.analyze(gray[:, :, None]) == expected
    assert whole.analyze(gray, channels="rgb") == expected  # one channel has no order to get wrong


def test_no_face_gives_no_faces_never_the_whole_image(analyzer):
    blank = np.full((480, 640, 3), 128, np.uint8)
    assert analyzer.analyze(blank, channels="bgr") == []
    assert analyzer.analyze_batch([blank, blank[:, :, 0]], channels="bgr") == [[], []]
    assert analyzer.analyze_batch([]) == []


def test_batch_equals_one_image_at_a_time(analyzer, tmp_path):
    path = tmp_path / "scene.png"
    path.write_bytes(encode(face_scene(seed=1)))
    images = [face_scene(), np.full((120, 160), 90, np.uint8), str(path), encode(face_scene(seed=2), ".jpg")]
    batch = analyzer.analyze_batch(images, channels="bgr")
    assert [len(faces) for faces in batch] == [1, 0, 1, 1]
    assert_same(batch, [analyzer.analyze(image, channels="bgr") for image in images])
    stack = np.stack([face_scene(), face_scene(seed=2)])  # (N, H, W, C): unambiguous, taken as N images
    assert_same(analyzer.analyze_batch(stack, channels="bgr"), analyzer.analyze_batch(list(stack), channels="bgr"))


def test_one_face_type_with_probabilities_everywhere(analyzer, whole, tmp_path):
    faces = analyzer.analyze(face_scene(), channels="bgr")
    clip = write_clip(tmp_path / "clip.mp4", frames=3)
    whole.stream_video(clip, lambda frame, time, found: faces.extend(found))
    assert len(faces) == 4 and all(type(face) is Face for face in faces)
    for face in faces:
        assert face.classes == FER2013_CLASSES and face.emotion == face.classes[int(face.probabilities.argmax())]
        assert face.probabilities.min() >= 0 and face.probabilities.max() <= 1 and face.score <= 1
        assert face.probabilities.sum() == pytest.approx(1, abs=1e-5)
        as_dict = face.as_dict()
        assert as_dict["box"] == face.box and as_dict["score"] == face.score
        assert list(as_dict["probabilities"]) == list(FER2013_CLASSES)
        json.dumps(as_dict)
    assert [face.track for face in faces] == [None, 1, 1, 1]


def test_pickled_analyzer_is_rebuilt_with_the_same_settings_and_results(checkpoint, analyzer):
    copy = pickle.loads(pickle.dumps(analyzer))
    assert copy is not analyzer and repr(copy) == repr(analyzer)
    assert copy.detector == analyzer.detector  # resolved when made: the same detector wherever rebuilt
    photo = face_scene()
    assert copy.analyze(photo, channels="bgr") == analyzer.analyze(photo, channels="bgr")
    flip = Analyzer(checkpoint, detector="haar", tta="flip", batch_size=7)
    assert repr(pickle.loads(pickle.dumps(flip))) == repr(flip)


def test_threads_sharing_an_analyzer_get_the_results_of_one_thread(analyzer, tmp_path):
    images = [face_scene(seed) for seed in range(2)]
    expected = [analyzer.analyze(image, channels="bgr") for image in images]
    clip = write_clip(tmp_path / "clip.avi", frames=6, codec="MJPG")
    threads_before = torch.get_num_threads()
    start = threading.Barrier(4)
    results: dict[int, list] = {}

    def photos(index: int) -> None:
        start.wait()
        results[index] = [analyzer.analyze(images[index], channels="bgr") for _ in range(8)]

    def video(index: int) -> None:
        start.wait()
        results[index] = [analyzer.analyze_video(clip, smooth=0).frames]

    workers = [threading.Thread(target=target, args=(index,))
               for index, target in enumerate((photos, photos, video, video))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for index in (0, 1):
        assert results[index] == [expected[index]] * 8
    pd.testing.assert_frame_equal(results[2][0], results[3][0])
    assert torch.get_num_threads() == threads_before  # the videos' one-thread setting is undone by the last


def test_video_table_is_fer_predict_csv_and_its_summary_the_json(checkpoint, whole, tmp_path, capfd):
    clip = write_clip(tmp_path / "clip.mp4", frames=12)
    assert main(["predict", str(clip), "--model", str(checkpoint), "--detector", "none", "--quiet", "--every", "2",
                 "--csv", str(tmp_path / "faces.csv"), "--json", str(tmp_path / "s.json")]) == 0, capfd.readouterr()
    video = whole.analyze_video(str(clip), every=2)
    pd.testing.assert_frame_equal(video.frames, pd.read_csv(tmp_path / "faces.csv"))
    [summary] = json.loads((tmp_path / "s.json").read_text())["videos"]
    assert video.summary() == summary
    assert list(video.tracks.columns) == ["track", "first_frame", "last_frame", "first_time", "last_time",
                                          "analysed_frames", "dominant_emotion", *FER2013_CLASSES]
    [track] = summary["tracks"]
    assert video.tracks.iloc[0].to_dict() == {**{key: track[key] for key in video.tracks.columns[:7]},
                                              **track["share"]}


def test_a_video_without_faces_has_the_same_columns(analyzer, tmp_path):
    video = analyzer.analyze_video(write_clip(tmp_path / "noise.mp4", frames=3))
    assert video.frames.empty and list(video.frames.columns)[:10] == ["source", "frame", "time", "track", "x", "y",
                                                                      "w", "h", "emotion", "score"]
    assert video.tracks.empty and len(video.tracks.columns) == 7 + len(FER2013_CLASSES)
    assert video.summary()["frames"] == 3


def test_evaluate_gives_fer_evaluate_datas_numbers(checkpoint, tmp_path, capfd):
    data = good_csv(tmp_path)
    out = tmp_path / "scores.json"
    for split, extra in ((None, []), ("PrivateTest", ["--split", "PrivateTest"])):
        assert main(["evaluate", "--data", str(data), "--model", str(checkpoint), "--tta", "flip", "--json", str(out),
                     *extra]) == 0, capfd.readouterr()
        scores = Analyzer(checkpoint, detector="none", tta="flip").evaluate(data, split=split)
        assert json.loads(json.dumps(scores)) == json.loads(out.read_text())


def one_line_error(call, *words: str) -> str:
    with pytest.raises(FerError) as raised:
        call()
    message = str(raised.value)
    assert message and "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


def test_bad_input_is_a_one_line_error_naming_the_problem(analyzer, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    colour = np.zeros((40, 40, 3), np.uint8)
    cases = [
        (lambda: analyzer.analyze(tmp_path / "missing.jpg"), ["missing.jpg", "No such file"]),
        (lambda: analyzer.analyze(text), ["notes.txt", "not an image"]),
        (lambda: analyzer.analyze(b"hello, I am text"), ["bytes", "not an image"]),
        (lambda: analyzer.analyze(b""), ["empty"]),
        (lambda: analyzer.analyze(encode(face_scene(), ".jpg")[:2000]), ["truncated"]),
        (lambda: analyzer.analyze(colour), ["3-channel", "channels='rgb'", "channels='bgr'"]),
        (lambda: analyzer.analyze(colour, channels="hsv"), ["channel order", "hsv", "rgb, bgr"]),
        (lambda: analyzer.analyze(colour.astype(np.float32)), ["float32", "uint8"]),
        (lambda: analyzer.analyze(np.zeros((4, 40, 40, 3), np.uint8), channels="rgb"), ["shape (4, 40, 40, 3)"]),
        (lambda: analyzer.analyze(np.zeros((40, 40, 2), np.uint8)), ["shape (40, 40, 2)"]),
        (lambda: analyzer.analyze(np.zeros((0, 40), np.uint8)), ["no pixels"]),
        (lambda: analyzer.analyze([1, 2, 3]), ["list", "NumPy array"]),
        (lambda: analyzer.analyze_batch([colour, b"junk"], channels="bgr"), ["images[1]", "not an image"]),
        (lambda: analyzer.analyze_batch(str(text)), ["list of images", "analyze()"]),
        (lambda: analyzer.analyze_batch(colour), ["list of images"]),
        (lambda: analyzer.analyze_video(tmp_path / "missing.mp4"), ["missing.mp4", "no such video file"]),
        (lambda: analyzer.analyze_video(text), ["notes.txt", "not a readable video"]),
        (lambda: analyzer.analyze_video(text, every=0), ["every", ">= 1"]),
        (lambda: analyzer.analyze_video(text, smooth=float("nan")), ["smooth", ">= 0"]),
        (lambda: Analyzer(tmp_path / "missing.pt"), ["missing.pt", "no such model file"]),
        (lambda: Analyzer(text, tta="sideways"), ["TTA mode", "sideways"]),
        (lambda: Analyzer(text, detector="eyes"), ["face detector", "eyes"]),
        (lambda: Analyzer(text, batch_size=0), ["batch_size", ">= 1"]),
    ]
    for call, words in cases:
        one_line_error(call, *words)


def test_importing_ferkit_does_not_import_torch_until_the_api_is_used():
    code = ("import sys, ferkit, ferkit.choices; assert 'torch' not in sys.modules, 'torch'; "
            "from ferkit import Analyzer; assert 'torch' in sys.modules; print(sorted(ferkit.__all__))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "Analyzer" in done.stdout


def doc_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of each ```pycon block: the examples that run; ```python blocks need
    libraries that are not installed here (Ray, Spark)."""
    return [(text[:found.start()].count("\n") + 2, found.group(1))
            for found in re.finditer(r"^```pycon\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)]


@pytest.fixture
def doc_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What docs/api.md's examples read, in the working folder: the two photos, a clip made from them
    (benchmarks/video.py's pan and zoom, 2 s) and faces/, a folder of class folders."""
    photos = [SHARED_DATA / "photos" / name for name in ("portrait.jpg", "two_people.jpg")]
    for photo in photos:
        (tmp_path / photo.name).symlink_to(photo)
    (tmp_path / "faces").symlink_to(SHARED_DATA / "fer2013-images-sample" / "test")
    _video_benchmark().make_clip(photos, tmp_path / "clip.mp4", seconds=2)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@requires_shared_data
def test_the_docs_examples_run(doc_folder):
    text = DOC.read_text()
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs: dict = {}
    blocks = doc_blocks(text)
    for line, code in blocks:
        test = parser.get_doctest(code, globs, f"docs/api.md:{line}", str(DOC), line - 1)
        runner.run(test, clear_globs=False)
        globs = test.globs  # the next block goes on where this one ended (DocTest copies what it is given)
    examples = runner.summarize(verbose=False)
    assert examples.attempted >= 30 and len(blocks) >= 6
    assert examples.failed == 0, "docs/api.md: see the failures printed above"


def test_doc_blocks_are_found():
    blocks = doc_blocks("text\n```pycon\n>>> 1 + 1\n2\n```\n\n```python\nimport ray\n```\n")
    assert blocks == [(3, ">>> 1 + 1\n2\n")]

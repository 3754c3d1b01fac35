"""`fer serve`'s page in a real browser: headless Debian Chromium, driven by Selenium, against a
server the tests start. Upload a photo, a non-image and a file over the limit; take a webcam
snapshot and run the live mode from Chromium's fake camera, fed a video of synthetic faces; check
the live mode's face tracks and time-based smoothing on made-up frames.

`.ci/run` installs chromium and chromium-driver; elsewhere these tests skip when they are absent.
FER_SERVE_SCREENSHOT=docs/serve.png saves the page after the photo test (docs/serve.md), and
FER_SERVE_MODEL=fer2013 runs the server on that model instead of an untrained one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import write_untrained_checkpoint
from ferkit.choices import default_detector
from ferkit.emotions import FER2013_CLASSES
from test_serve import Server, encode, face_scene

webdriver = pytest.importorskip("selenium.webdriver",
                                reason="selenium is not installed (pip install -r requirements.txt)")
from selenium.webdriver.common.by import By  # noqa: E402  (only once selenium is known to be there)
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
                       reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
                              ".ci/run installs them)"),
]
UPLOAD_MB = 1
WAIT_S = 60


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """Gray frames as a YUV 4:2:0 video, the format Chromium's fake camera plays (in a loop)."""
    height, width = frames[0].shape
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        chroma = bytes([128]) * (width // 2 * height // 2)
        for frame in frames:
            out.write(b"FRAME\n" + frame.tobytes() + chroma + chroma)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    paths = {"photo": folder / "smiling person.jpg", "blank": folder / "wall.png", "text": folder / "notes.jpg",
             "large": folder / "huge.png", "video": folder / "faces.y4m"}
    paths["photo"].write_bytes(encode(face_scene()))
    paths["blank"].write_bytes(encode(np.full((240, 320, 3), 150, np.uint8), ".png"))
    paths["text"].write_bytes(b"this is not a picture\n" * 50)
    paths["large"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(UPLOAD_MB * 2**20 + 1))
    scenes = [cv2.cvtColor(face_scene(seed), cv2.COLOR_BGR2GRAY) for seed in (0, 1)]
    write_y4m(paths["video"], [scenes[index // 10 % 2] for index in range(40)])
    return paths


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model = os.environ.get("FER_SERVE_MODEL") or write_untrained_checkpoint(
        tmp_path_factory.mktemp("model") / "untrained-basic.pt")
    running = Server(model, "--max-upload-mb", str(UPLOAD_MB))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={files['video']}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def page(browser: webdriver.Chrome, server: Server) -> webdriver.Chrome:
    browser.get(server.url + "/")
    WebDriverWait(browser, WAIT_S).until(lambda driver: "emotions" in driver.find_element(By.ID, "model").text)
    return browser


# What a result card shows, read in one step: the live mode replaces its card three times a second,
# so element handles taken one by one would go stale.
CARD_SUMMARY = """
const card = document.querySelector(arguments[0]);
if (!card || card.dataset.state === "pending") return null;
const text = (selector) => { const node = card.querySelector(selector); return node ? node.textContent : null; };
return {state: card.dataset.state, title: text("h2"), message: text(".message"), emotion: text(".face .emotion"),
        label: text(".box-label"), boxes: card.querySelectorAll(".frame .box").length,
        tracks: Array.from(card.querySelectorAll(".frame .box"), (box) => box.dataset.track || null),
        frame: Number(card.dataset.frame || 0),
        bars: Array.from(card.querySelectorAll(".bar-row"), (row) => row.dataset.emotion)};
"""


def card(driver: webdriver.Chrome, selector: str) -> dict:
    """The card at `selector` once its answer is in."""
    return WebDriverWait(driver, WAIT_S).until(lambda _: driver.execute_script(CARD_SUMMARY, selector))


def upload(driver: webdriver.Chrome, *paths: Path) -> None:
    driver.find_element(By.ID, "files").send_keys("\n".join(str(path) for path in paths))


def assert_annotated(shown: dict) -> None:
    """One box drawn on the image, labelled with an emotion, and a bar for every class."""
    assert shown["state"] == "done" and shown["boxes"] == 1, shown
    assert shown["emotion"] in FER2013_CLASSES and shown["label"].startswith(shown["emotion"]), shown
    assert shown["bars"] == list(FER2013_CLASSES), shown


def test_photos_are_shown_with_boxes_emotions_and_bars(page, files):
    upload(page, files["photo"], files["blank"])
    photo, blank = card(page, "#results > .result:nth-child(1)"), card(page, "#results > .result:nth-child(2)")
    assert photo["title"] == "smiling person.jpg"
    assert_annotated(photo)
    assert f"face detector {default_detector()}" in page.find_element(By.ID, "model").text
    assert blank["state"] == "done" and blank["message"].startswith("No face found"), blank
    if os.environ.get("FER_SERVE_SCREENSHOT"):
        page.save_screenshot(os.environ["FER_SERVE_SCREENSHOT"])


def test_a_non_image_and_a_file_over_the_limit_get_clear_messages(page, files):
    upload(page, files["text"], files["large"])
    text, large = card(page, "#results > .result:nth-child(1)"), card(page, "#results > .result:nth-child(2)")
    assert text["state"] == "error" and text["message"].startswith("Not a usable image: not an image"), text
    assert large["state"] == "error" and large["message"].startswith("Too large"), large


def test_webcam_snapshot_and_live_mode(page):
    assert not page.find_element(By.ID, "camera").is_displayed()
    page.find_element(By.ID, "camera-start").click()
    WebDriverWait(page, WAIT_S).until(lambda driver: driver.execute_script(
        "return document.getElementById('video').videoWidth > 0"))
    page.find_element(By.ID, "snapshot").click()
    snapshot = card(page, "#results .result")
    assert snapshot["title"].startswith("webcam")
    assert_annotated(snapshot)
    assert snapshot["tracks"] == [None] and "#" not in snapshot["label"], snapshot  # one frame: no track
    page.find_element(By.ID, "live").click()
    # The fake camera's face stays in place (the video swaps two faces there every second), so
    # every live frame shows it as track 1, its label averaged.
    frame = 0
    for _ in range(4):  # four frames in a row
        shown = WebDriverWait(page, WAIT_S).until(
            lambda driver, after=frame: (summary := driver.execute_script(CARD_SUMMARY, "#live-result .result"))
            and summary["frame"] > after and summary)
        assert_annotated(shown)
        assert shown["tracks"] == ["1"] and shown["label"].endswith(" #1"), shown
        assert "averaged over about 0.5 s" in shown["message"], shown
        frame = shown["frame"]
    page.find_element(By.ID, "camera-stop").click()
    assert not page.find_element(By.ID, "camera").is_displayed()


# Runs `frames` ([time in ms, [[x, y, w, h, {class: probability}], ...]], ...) through a new tracker
# of the page (window.ferTracking) and returns each frame's faces as [track, emotion, score, probabilities].
TRACK = """
const tracker = window.ferTracking.createTracker();
return arguments[0].map(([time, faces]) => tracker.update(
    faces.map(([x, y, w, h, probabilities]) => ({box: {x, y, w, h}, probabilities})), time
  ).map((face) => [face.track, face.emotion, face.score, face.probabilities]));
"""
HAPPY, SAD = {"Happy": 0.9, "Sad": 0.1}, {"Happy": 0.1, "Sad": 0.9}


def track(driver: webdriver.Chrome, frames: list) -> list[list[list]]:
    return driver.execute_script(TRACK, frames)


def test_live_labels_are_averaged_over_time_not_frames(page):
    """A face that turns from happy to sad moves its label with a time constant of 0.5 s: one frame
    later it still reads Happy, and after 0.5 s the change has gone 1 - 1/e of the way, whether the
    frames come every 50 ms or every 250 ms."""
    box = [200, 150, 200, 200]
    first, second = track(page, [[0, [[*box, HAPPY]]], [100, [[*box, SAD]]]])
    assert first == [[1, "Happy", 0.9, HAPPY]]
    number, emotion, score, probabilities = second[0]
    assert (number, emotion) == (1, "Happy"), second  # unsmoothed it would say Sad
    assert probabilities["Sad"] == pytest.approx(0.9 - 0.8 * np.exp(-0.1 / 0.5)) and score == probabilities["Happy"]
    for step_ms in (50, 250):
        frames = [[0, [[*box, HAPPY]]]] + [[time, [[*box, SAD]]] for time in range(step_ms, 501, step_ms)]
        last = track(page, frames)[-1][0]
        assert last[0] == 1 and last[3]["Sad"] == pytest.approx(0.9 - 0.8 * np.exp(-1)), (step_ms, last)
    # Long after the change the label is the face's own.
    settled = track(page, [[0, [[*box, HAPPY]]]] + [[time, [[*box, SAD]]] for time in range(300, 3001, 300)])
    assert settled[-1][0][:2] == [1, "Sad"] and settled[-1][0][2] == pytest.approx(0.9 - 0.8 * np.exp(-3000 / 500))


def test_live_tracks_follow_faces_by_overlap(page):
    left, right = [50, 100, 150, 150], [400, 100, 150, 150]
    moved_left = [70, 110, 150, 150]  # overlaps `left` by 0.6
    frames = [[0, [[*left, HAPPY], [*right, SAD]]],
              [300, [[*right, SAD], [*moved_left, HAPPY]]],  # listed in the other order
              [600, [[*right, SAD], [300, 300, 100, 100, HAPPY]]],  # `left` gone; a face elsewhere
              [1400, [[*left, HAPPY]]],  # `left` back after 1.1 s: a new track
              [1500, [[*left, HAPPY], [*right, SAD]]]]  # `right` unseen for 0.9 s: still its track
    numbers = [[face[0] for face in faces] for faces in track(page, frames)]
    assert numbers == [[1, 2], [2, 1], [2, 3], [4], [4, 2]], numbers
    # Greedy by overlap: of two faces near one track, the one overlapping it most keeps it.
    near, nearer = [90, 100, 150, 150], [60, 100, 150, 150]
    numbers = [[face[0] for face in faces] for faces in track(page, [[0, [[*left, HAPPY]]],
                                                                   [100, [[*near, SAD], [*nearer, HAPPY]]]])]
    assert numbers == [[1], [2, 1]], numbers

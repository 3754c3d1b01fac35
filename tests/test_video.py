"""`fer predict` on video files: CSV rows per face and frame, face tracks, smoothing, the JSON summary,
the annotated copy, the timeline figure, and damaged or cut-short files."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SHARED_DATA, requires_shared_data, write_untrained_checkpoint
from ferkit.api.results import CSV_COLUMNS, CsvRows
from ferkit.api.video import VIDEO_SUFFIXES, _frames  # imported before any video is opened: it quiets FFmpeg's log
from ferkit.cli import main
from ferkit.emotions import FER2013_CLASSES
from ferkit.inference.faces import Face
from ferkit.inference.tracking import Tracker

FPS = 10.0
FRAMES = 24


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("model") / "basic.pt")


def write_clip(path: Path, frames: int = FRAMES, codec: str = "mp4v", size: tuple[int, int] = (96, 72)) -> Path:
    """Noisy frames that change from one to the next, so that raw per-frame probabilities differ."""
    rng = np.random.default_rng(7)
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*codec), FPS, size)
    assert writer.isOpened()
    for index in range(frames):
        base = np.full((size[1], size[0], 3), 40 + 8 * index, np.float64)
        writer.write(np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8))
    writer.release()
    return path


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def predict(model: Path, *args: str) -> int:
    return main(["predict", *args, "--model", str(model), "--detector", "none", "--quiet"])


def test_csv_json_annotate_and_plot_for_a_video_and_an_image(checkpoint, tmp_path, capfd):
    clip = write_clip(tmp_path / "clip.mp4")
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), np.full((60, 60), 128, np.uint8))
    out = tmp_path / "out"
    code = predict(checkpoint, str(clip), str(image), "--csv", str(out / "faces.csv"),
                   "--json", str(out / "summary.json"), "--annotate", str(out / "ann"), "--plot", str(out / "fig"))
    assert code == 0, capfd.readouterr().err
    table = pd.read_csv(out / "faces.csv")
    assert tuple(table.columns) == (*CSV_COLUMNS, *FER2013_CLASSES)
    still = table[table["source"] == str(image)]
    assert len(still) == 1 and still["frame"].item() == 0 and still["time"].item() == 0
    assert still["track"].isna().all()
    video = table[table["source"] == str(clip)]
    assert list(video["frame"]) == list(range(FRAMES))
    assert np.allclose(video["time"], np.arange(FRAMES) / FPS, atol=1e-3)
    assert set(video["track"]) == {1}  # one face that stays: one track throughout
    assert np.allclose(video[list(FER2013_CLASSES)].sum(axis=1), 1, atol=1e-4)
    assert (video["emotion"] == video[list(FER2013_CLASSES)].idxmax(axis=1)).all()

    summary = json.loads((out / "summary.json").read_text())
    [entry] = summary["videos"]
    assert (entry["frames"], entry["fps"], entry["width"], entry["height"]) == (FRAMES, FPS, 96, 72)
    [track] = entry["tracks"]
    assert (track["track"], track["first_frame"], track["last_frame"]) == (1, 0, FRAMES - 1)
    assert sum(track["share"].values()) == pytest.approx(1, abs=1e-3)
    assert track["dominant_emotion"] == video["emotion"].mode()[0]
    assert summary["images"][0]["path"] == str(image)

    annotated = out / "ann" / "clip.mp4"
    capture = cv2.VideoCapture(str(annotated))
    assert capture.get(cv2.CAP_PROP_FPS) == FPS
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (96, 72)
    assert frame_count(annotated) == frame_count(clip) == FRAMES
    assert (out / "ann" / "still.png").is_file()
    assert cv2.imread(str(out / "fig" / "clip.png")) is not None


def test_smoothing_averages_each_tracks_last_seconds(checkpoint, tmp_path):
    clip = write_clip(tmp_path / "clip.avi", codec="MJPG")
    assert predict(checkpoint, str(clip), "--csv", str(tmp_path / "raw.csv"), "--smooth", "0") == 0
    assert predict(checkpoint, str(clip), "--csv", str(tmp_path / "smooth.csv"), "--smooth", "0.5") == 0
    raw = pd.read_csv(tmp_path / "raw.csv")[list(FER2013_CLASSES)].to_numpy()
    smooth = pd.read_csv(tmp_path / "smooth.csv")[list(FER2013_CLASSES)].to_numpy()
    window = round(0.5 * FPS)  # frames whose time lies in (t - 0.5 s, t]
    expected = np.stack([raw[max(0, k - window + 1):k + 1].mean(axis=0) for k in range(FRAMES)])
    assert np.abs(raw - smooth).max() > 1e-3  # the frames differ, so smoothing shows
    assert np.allclose(smooth, expected, atol=2e-6)
    assert np.abs(np.diff(smooth, axis=0)).mean() < np.abs(np.diff(raw, axis=0)).mean()


def test_every_n_analyses_one_frame_in_n_and_the_copy_keeps_every_frame(checkpoint, tmp_path, capfd):
    clip = write_clip(tmp_path / "clip.mkv")
    code = predict(checkpoint, str(clip), "--every", "5", "--csv", str(tmp_path / "faces.csv"),
                   "--annotate", str(tmp_path / "ann"), "--json", str(tmp_path / "s.json"))
    assert code == 0, capfd.readouterr().err
    assert list(pd.read_csv(tmp_path / "faces.csv")["frame"]) == list(range(0, FRAMES, 5))
    assert json.loads((tmp_path / "s.json").read_text())["videos"][0]["analysed_frames"] == len(range(0, FRAMES, 5))
    assert frame_count(tmp_path / "ann" / "clip.mkv.mp4") == FRAMES


def test_cut_short_video_is_analysed_to_its_last_frame_with_one_warning(checkpoint, tmp_path, capfd):
    whole = write_clip(tmp_path / "whole.avi", frames=60, codec="MJPG")
    cut = tmp_path / "cut.avi"
    data = whole.read_bytes()
    cut.write_bytes(data[:len(data) * 6 // 10])
    readable = frame_count(cut)
    assert 0 < readable < 60
    code = predict(checkpoint, str(cut), "--csv", str(tmp_path / "faces.csv"),
                   "--json", str(tmp_path / "s.json"), "--annotate", str(tmp_path / "ann"))
    err = capfd.readouterr().err
    assert code == 1
    assert err.strip().splitlines() == [f"fer: warning: {cut}: stopped at frame {readable} of 60 (file cut short "
                                        f"or damaged); results cover frames 0-{readable - 1}"]
    assert len(pd.read_csv(tmp_path / "faces.csv")) == readable
    assert json.loads((tmp_path / "s.json").read_text())["videos"][0]["frames"] == readable
    assert frame_count(tmp_path / "ann" / "cut.avi.mp4") == readable


def test_unreadable_videos_are_skipped_with_one_line_each(checkpoint, tmp_path, capfd):
    good = write_clip(tmp_path / "good.mp4", frames=5)
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    moovless = tmp_path / "cut.mp4"  # an MP4 cut before its index: nothing is decodable
    moovless.write_bytes(good.read_bytes()[:200])
    code = predict(checkpoint, str(fake), str(moovless), str(good), "--json", str(tmp_path / "s.json"))
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"fer: warning: {fake}: not a readable video (unknown format or damaged file)",
                   f"fer: warning: {moovless}: not a readable video (unknown format or damaged file)"]
    result = json.loads((tmp_path / "s.json").read_text())
    assert [video["path"] for video in result["videos"]] == [str(good)]
    assert {entry["path"] for entry in result["failed"]} == {str(fake), str(moovless)}


def test_every_container_named_is_read(checkpoint, tmp_path, capfd):
    codecs = {".mp4": "mp4v", ".avi": "MJPG", ".mov": "mp4v", ".mkv": "mp4v", ".webm": "VP80", ".m4v": "mp4v"}
    assert set(codecs) == VIDEO_SUFFIXES
    clips = [write_clip(tmp_path / f"clip{suffix}", frames=4, codec=codec) for suffix, codec in codecs.items()]
    assert predict(checkpoint, *map(str, clips), "--json", str(tmp_path / "s.json")) == 0
    assert [video["frames"] for video in json.loads((tmp_path / "s.json").read_text())["videos"]] == [4] * len(clips)


def test_bad_video_options_are_usage_errors(checkpoint, tmp_path, capfd):
    clip = write_clip(tmp_path / "clip.mp4", frames=3)
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), np.full((60, 60), 128, np.uint8))
    for args, message in ((["--every", "0"], "--every must be an integer >= 1"),
                          (["--smooth", "-1"], "--smooth must be a number of seconds >= 0"),
                          (["--smooth", "nan"], "--smooth must be a number of seconds >= 0")):
        assert predict(checkpoint, str(clip), *args) == 2
        assert message in capfd.readouterr().err
    for option in (["--plot", str(tmp_path / "fig")], ["--every", "2"], ["--smooth", "1"]):
        assert predict(checkpoint, str(image), *option) == 2
        assert f"{option[0]} applies to videos, and no video is among the inputs" in capfd.readouterr().err
    assert not (tmp_path / "fig").exists()


def test_a_video_without_faces_gives_empty_tracks_and_a_plot_without_warnings(checkpoint, tmp_path, capfd):
    clip = write_clip(tmp_path / "noise.mp4", frames=6)
    code = main(["predict", str(clip), "--model", str(checkpoint), "--json", str(tmp_path / "s.json"),
                 "--plot", str(tmp_path / "fig"), "--csv", str(tmp_path / "new" / "faces.csv")])
    out, err = capfd.readouterr()
    assert code == 0 and err == ""  # and no progress bar: stderr is not a terminal here
    [video] = json.loads((tmp_path / "s.json").read_text())["videos"]
    assert video["tracks"] == [] and video["frames"] == 6 and video["fps_assumed"] is False
    assert "0 face tracks" in out
    assert list(pd.read_csv(tmp_path / "new" / "faces.csv").columns) == [*CSV_COLUMNS, *FER2013_CLASSES]
    assert cv2.imread(str(tmp_path / "fig" / "noise.png")) is not None


def test_outputs_of_clip_avi_and_clip_mp4_in_one_folder_do_not_collide(checkpoint, tmp_path, capfd):
    folder = tmp_path / "in"
    folder.mkdir()
    write_clip(folder / "clip.mp4", frames=3)
    write_clip(folder / "clip.avi", frames=4, codec="MJPG")
    annotate, plot = folder / "ann", folder / "fig"  # inside the folder searched: a rerun must skip them
    for _ in range(2):
        assert predict(checkpoint, str(folder), "--annotate", str(annotate), "--plot", str(plot),
                       "--json", str(tmp_path / "s.json")) == 0, capfd.readouterr().err
        assert len(json.loads((tmp_path / "s.json").read_text())["videos"]) == 2
    assert sorted(path.name for path in annotate.iterdir()) == ["clip.avi.mp4", "clip.mp4"]
    assert sorted(path.name for path in plot.iterdir()) == ["clip.avi.png", "clip.png"]
    assert frame_count(annotate / "clip.avi.mp4") == 4


class FailingCapture:
    """Two frames, then the decoder raises."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self) -> tuple[bool, np.ndarray]:
        self.reads += 1
        if self.reads > 2:
            raise cv2.error("corrupt frame")
        return True, np.zeros((4, 4, 3), np.uint8)


def test_a_decoder_that_fails_ends_the_stream_with_its_reason():
    problems: list[str] = []
    frames = list(_frames(FailingCapture(), problems))  # would hang if the reader died silently
    assert len(frames) == 2 and problems == ["corrupt frame"]


def test_video_analysis_gives_torch_its_threads_back(checkpoint, tmp_path):
    import torch

    before = torch.get_num_threads()
    assert predict(checkpoint, str(write_clip(tmp_path / "clip.mp4", frames=2))) == 0
    assert torch.get_num_threads() == before


def test_csv_rows_reach_the_file_frame_by_frame(tmp_path):
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as file:
        rows = CsvRows(file, FER2013_CLASSES)
        probabilities = np.full(len(FER2013_CLASSES), 1 / len(FER2013_CLASSES))
        rows.add(Path("clip.mp4"), 3, 0.1, [Face((1, 2, 30, 30), probabilities, FER2013_CLASSES, track=4)])
        written = list(csv.reader(io.StringIO(path.read_text())))  # read before the file is closed
    assert written[0] == [*CSV_COLUMNS, *FER2013_CLASSES]
    assert written[1][:8] == ["clip.mp4", "3", "0.100", "4", "1", "2", "30", "30"]


def test_tracker_keeps_numbers_while_faces_move_and_ends_lost_tracks():
    tracker = Tracker(smooth_seconds=0)
    left, right = (10, 10, 50, 50), (200, 10, 50, 50)
    assert [t.number for t in tracker.assign([left, right], 0.0)] == [1, 2]
    moved = [(right[0] + 8, 12, 50, 50), (left[0] + 5, 10, 52, 52)]  # listed in the other order
    assert [t.number for t in tracker.assign(moved, 0.1)] == [2, 1]
    assert [t.number for t in tracker.assign([moved[1]], 0.5)] == [1]  # face 2 gone for a moment
    assert [t.number for t in tracker.assign([moved[1], moved[0]], 0.9)] == [1, 2]  # back within the gap
    assert [t.number for t in tracker.assign([moved[0]], 3.0)] == [3]  # gone too long: a new track


def _video_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_video", REPO / "benchmarks" / "video.py")
    assert spec and spec.loader
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


@requires_shared_data
def test_real_clip_gives_one_stable_track_per_face(tmp_path, capfd):
    """The benchmark's clip: 2 s over the portrait (1 face), 2 s over the couple (2 faces)."""
    photos = [SHARED_DATA / "photos" / "portrait.jpg", SHARED_DATA / "photos" / "two_people.jpg"]
    clip = tmp_path / "clip.mp4"
    frames = _video_benchmark().make_clip(photos, clip, seconds=4)
    assert main(["predict", str(clip), "--json", str(tmp_path / "s.json"), "--quiet"]) == 0, capfd.readouterr()
    tracks = json.loads((tmp_path / "s.json").read_text())["videos"][0]["tracks"]
    half = frames // 2
    assert [(t["first_frame"], t["last_frame"]) for t in tracks] == [(0, half - 1), (half, frames - 1),
                                                                    (half, frames - 1)]
    assert all(t["analysed_frames"] == t["last_frame"] - t["first_frame"] + 1 for t in tracks)
    assert tracks[0]["dominant_emotion"] == "Happy"  # the portrait smiles

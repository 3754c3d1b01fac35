"""Build docs/video-frame.jpg and docs/video-timeline.png: `fer predict` on the clip that
benchmarks/video.py makes from the public-domain photos in ../shared/data/photos.

    python docs/make_video_example.py
"""

import sys
import tempfile
from pathlib import Path

import cv2

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "benchmarks"))

from ferkit.cli import main  # noqa: E402
from video import PHOTOS, make_clip  # noqa: E402  (benchmarks/video.py, once the path is set)

with tempfile.TemporaryDirectory() as scratch:
    work = Path(scratch)
    clip = work / "clip.mp4"
    frames = make_clip(sorted(PHOTOS.glob("*.jpg")), clip, seconds=6)
    status = main(["predict", str(clip), "--annotate", str(work / "annotated"), "--plot", str(work / "plots"),
                   "--quiet"])
    capture = cv2.VideoCapture(str(work / "annotated" / "clip.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, frames * 3 // 4)  # in the two-person part
    ok, frame = capture.read()
    assert ok, "cannot read the annotated clip back"
    cv2.imwrite(str(DOCS / "video-frame.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    (DOCS / "video-timeline.png").write_bytes((work / "plots" / "clip.png").read_bytes())
sys.exit(status)

"""Moved to ferkit.api.video, which `fer predict` and the Python API share; these names stay importable
from here for code written against the old place (benchmarks/video.py)."""

from ferkit.api.video import (
    ANNOTATED_SUFFIX,
    VIDEO_SUFFIXES,
    BadVideo,
    TrackSummary,
    VideoOptions,
    VideoResult,
    analyse_video,
    plot_timeline,
)

__all__ = ["ANNOTATED_SUFFIX", "VIDEO_SUFFIXES", "BadVideo", "TrackSummary", "VideoOptions", "VideoResult",
           "analyse_video", "plot_timeline"]

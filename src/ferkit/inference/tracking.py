"""Face tracks through a video: a face keeps its number from frame to frame, and its probabilities
are averaged over a short window of time so that its label does not flicker.

Matching is by box overlap alone: between two analysed frames a face moves a fraction of its own
width, so the box of the same face overlaps its previous box far more than any other face's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ferkit.inference.detectors import Box, overlap

# Boxes of one face in consecutive analysed frames overlap well above this; neighbouring faces
# (side by side in a group photo) overlap well below it.
MIN_OVERLAP = 0.3
# A face unseen for this long (a turned head, a passer-by in front) ends its track; when it comes
# back it starts a new one.
MAX_GAP_SECONDS = 1.0


@dataclass
class Track:
    number: int
    box: Box
    last_seen: float  # seconds
    # (time, probabilities) of the frames inside the smoothing window, oldest first.
    recent: deque[tuple[float, np.ndarray]] = field(default_factory=deque)

    def smoothed(self, probabilities: np.ndarray, time: float, window: float) -> np.ndarray:
        """Add this frame's probabilities; the mean over the frames of the last `window` seconds."""
        self.recent.append((time, probabilities))
        # The window is (time - window, time]; the margin keeps float error (0.7 - 0.5 < 0.2) out of it.
        while self.recent and self.recent[0][0] <= time - window + 1e-6:
            self.recent.popleft()
        return np.mean([p for _, p in self.recent], axis=0)


class Tracker:
    """Numbers faces frame by frame, from 1 in order of appearance, and smooths their probabilities."""

    def __init__(self, smooth_seconds: float, max_gap: float = MAX_GAP_SECONDS,
                 min_overlap: float = MIN_OVERLAP) -> None:
        self.smooth_seconds = smooth_seconds
        self.max_gap = max_gap
        self.min_overlap = min_overlap
        self.tracks: list[Track] = []
        self.count = 0

    def assign(self, boxes: list[Box], time: float) -> list[Track]:
        """The track of each box at `time`: the best-overlapping live track, greedily, else a new one."""
        self.tracks = [track for track in self.tracks if time - track.last_seen <= self.max_gap]
        pairs = sorted(((overlap(box, track.box)[0], i, j) for i, box in enumerate(boxes)
                        for j, track in enumerate(self.tracks)), reverse=True)
        matched: dict[int, Track] = {}
        taken: set[int] = set()
        for score, i, j in pairs:
            if score < self.min_overlap:
                break
            if i not in matched and j not in taken:
                matched[i] = self.tracks[j]
                taken.add(j)
        for i, box in enumerate(boxes):
            if i not in matched:
                self.count += 1
                matched[i] = Track(self.count, box, time)
                self.tracks.append(matched[i])
            matched[i].box, matched[i].last_seen = box, time
        return [matched[i] for i in range(len(boxes))]

    def smooth(self, track: Track, probabilities: np.ndarray, time: float) -> np.ndarray:
        """`probabilities` averaged with the track's over the last `smooth_seconds` (0: as they are)."""
        if self.smooth_seconds <= 0:
            return probabilities
        return track.smoothed(probabilities, time, self.smooth_seconds)

"""The public Python API: `from ferkit import Analyzer` (docs/api.md).

`fer predict` and `fer serve` run through it too; the modules below it here are the photo and video
analysis it runs (video.py), what results become (results.py) and what it accepts as a photo (inputs.py).
"""

from ferkit.api.analyzer import Analyzer, VideoAnalysis
from ferkit.api.video import VideoResult
from ferkit.errors import FerError
from ferkit.inference.faces import Face

__all__ = ["Analyzer", "Face", "FerError", "VideoAnalysis", "VideoResult"]

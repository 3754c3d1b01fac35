"""The public Python API: `from fer import Analyzer` (docs/api.md).

`fer predict` and `fer serve` run through it too; the modules below it here are the photo and video
analysis it runs (video.py), what results become (results.py) and what it accepts as a photo (inputs.py).
"""

from fer.api.analyzer import Analyzer, VideoAnalysis
from fer.api.video import VideoResult
from fer.errors import FerError
from fer.inference.faces import Face

__all__ = ["Analyzer", "Face", "FerError", "VideoAnalysis", "VideoResult"]

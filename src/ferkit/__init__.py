"""Reproducible facial-emotion recognition on FER-2013.

The Python API (docs/api.md): `from ferkit import Analyzer`. Its names are imported on first use, so
that `import ferkit.choices` and `fer --help` do not pay for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The last release in CHANGELOG.md; pyproject.toml reads it from here.
__version__ = "0.3.0"

__all__ = ["Analyzer", "Face", "FerError", "VideoAnalysis", "VideoResult", "__version__"]

if TYPE_CHECKING:
    from ferkit.api import Analyzer, Face, FerError, VideoAnalysis, VideoResult


def __getattr__(name: str) -> Any:
    if name in __all__:
        import ferkit.api

        return getattr(ferkit.api, name)
    raise AttributeError(f"module 'fer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

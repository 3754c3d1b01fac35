"""Shared by the tests: where the real FER-2013 data sits, and a marker that skips without it."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"the real FER-2013 data is not at {SHARED_DATA} (a fresh clone has none)")

"""Shared by the tests: where the real FER-2013 data sits, and a marker that skips without it."""

import subprocess
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"the real FER-2013 data is not at {SHARED_DATA} (a fresh clone has none)")

REPO = Path(__file__).resolve().parents[1]


def committed_params_text() -> str:
    """params.yaml as committed, so tests do not depend on a user's local experiments with it."""
    shown = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=REPO, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else (REPO / "params.yaml").read_text()

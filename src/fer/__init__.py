"""Reproducible facial-emotion recognition on FER-2013."""

# The last release in CHANGELOG.md; pyproject.toml reads it from here.
__version__ = "0.3.0"

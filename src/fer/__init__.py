"""Reproducible facial-emotion recognition on FER-2013."""

__version__ = "0.1.0"

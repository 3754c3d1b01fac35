"""Moved to ferkit.api.results, which `fer predict`, `fer serve` and the Python API share; these names stay
importable from here for code written against the old place (benchmarks/video.py)."""

from ferkit.api.results import CSV_COLUMNS, CsvRows, class_colour, csv_rows, draw_faces, face_json, image_json

__all__ = ["CSV_COLUMNS", "CsvRows", "class_colour", "csv_rows", "draw_faces", "face_json", "image_json"]

"""The predictions file of ``imgcls predict --output``: ``.json`` or ``.csv``, a row per photo.

Keys: ``image_path``, ``predicted_class``, ``confidence`` (the vote share, 4 decimals),
``neighbours`` (``image_path``, ``class_name``, ``distance`` of each of the top-k gallery photos,
nearest first) and ``error`` (why the photo could not be read, else null). The CSV has the columns
``image_path, predicted_class, confidence, error, neighbours``, with ``neighbours`` as JSON text
and an empty ``error`` for a photo that was read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from imgcls_pipeline.core.atomic import write_csv_atomic, write_text_atomic
from imgcls_pipeline.core.errors import UserError

SUFFIXES = (".csv", ".json")


@dataclass
class Prediction:
    image_path: str
    predicted_class: str | None = None
    confidence: float = 0.0
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if its suffix names a format; checked before the (slow) classification."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"--output {path} must end in {' or '.join(SUFFIXES)}.")
    return path


def prediction_rows(predictions: Sequence[Prediction]) -> list[dict[str, Any]]:
    """One dict per photo, in the keys and order of the JSON file."""
    return [
        {
            "image_path": p.image_path,
            "predicted_class": p.predicted_class,
            "confidence": round(p.confidence, 4),
            "neighbours": p.neighbours,
            "error": p.error,
        }
        for p in predictions
    ]


def write_predictions(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> None:
    """The rows of ``prediction_rows`` as JSON or CSV, by the suffix of ``path``, atomically."""
    path = check_output_path(path)
    if path.suffix.lower() == ".json":
        write_text_atomic(path, json.dumps(list(rows), indent=2, ensure_ascii=False))
        return
    flat = [
        {
            "image_path": r["image_path"],
            "predicted_class": r["predicted_class"],
            "confidence": r["confidence"],
            "error": r["error"] or "",
            "neighbours": json.dumps(r["neighbours"], ensure_ascii=False),
        }
        for r in rows
    ]
    write_csv_atomic(path, pd.DataFrame(flat))

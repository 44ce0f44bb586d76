"""The predictions file of ``imgcls predict --output``: ``.json`` or ``.csv``, a row per photo.

JSON: a list of objects with ``image_path``, ``predicted_class`` (``"unknown"`` when
``--open_set_threshold`` rejects the photo), ``confidence`` (the best class's share of the
similarity-weighted vote, 4 decimals), ``neighbours`` (``image_path``, ``class_name`` and
``similarity`` — the cosine similarity, 1 = identical — of each of the top-k gallery photos,
most similar first) and ``error`` (why the photo could not be read, else null).

CSV: the same, flat, for spreadsheets: ``image_path, predicted_class, confidence,
neighbour_1_path, neighbour_1_class, neighbour_1_similarity, …, neighbour_K_similarity, error``;
cells of a missing neighbour and the error of a photo that was read are empty.
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
UNKNOWN = "unknown"  # the answer when the nearest gallery photo is below the open-set threshold


@dataclass
class Prediction:
    image_path: str
    predicted_class: str | None = None
    confidence: float = 0.0
    neighbours: list[dict[str, Any]] = field(default_factory=list)  # path, class, similarity
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


def flat_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``prediction_rows`` with one column per neighbour field, as the CSV holds them."""
    depth = max((len(r["neighbours"]) for r in rows), default=0)
    flat = []
    for r in rows:
        row = {k: r[k] for k in ("image_path", "predicted_class", "confidence")}
        for rank in range(1, depth + 1):
            n = r["neighbours"][rank - 1] if rank <= len(r["neighbours"]) else {}
            row[f"neighbour_{rank}_path"] = n.get("image_path")
            row[f"neighbour_{rank}_class"] = n.get("class_name")
            row[f"neighbour_{rank}_similarity"] = n.get("similarity")
        row["error"] = r["error"] or ""
        flat.append(row)
    return flat


def write_predictions(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> None:
    """The rows of ``prediction_rows`` as JSON or CSV, by the suffix of ``path``, atomically."""
    path = check_output_path(path)
    if path.suffix.lower() == ".json":
        write_text_atomic(path, json.dumps(list(rows), indent=2, ensure_ascii=False))
        return
    write_csv_atomic(path, pd.DataFrame(flat_rows(rows)))

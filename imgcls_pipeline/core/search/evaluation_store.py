"""The evaluation reports on disk: ``<split>.json`` for each evaluated split.

Keys: the metrics of ``evaluate_retrieval`` (``recall@K``, ``accuracy``, ``nn_accuracy``,
``map@r``, ``per_class``, ``confusion_matrix``, ``classes``, ...), then ``split`` and
``settings`` (``min_val_recall_at_1``, the floor the asset check holds val Recall@1 to).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imgcls_pipeline.core.atomic import write_text_atomic
from imgcls_pipeline.core.tables import read_json_object

FOLDER = "evaluation"  # under the artifacts folder


def report_path(folder: str | os.PathLike[str], split: str) -> Path:
    return Path(folder) / f"{split}.json"


def write_evaluation(
    folder: str | os.PathLike[str],
    split: str,
    metrics: Mapping[str, Any],
    *,
    min_val_recall_at_1: float,
) -> Path:
    report = {**metrics, "split": split, "settings": {"min_val_recall_at_1": min_val_recall_at_1}}
    path = report_path(folder, split)
    write_text_atomic(path, json.dumps(report, indent=2, ensure_ascii=False))
    return path


def read_evaluation(folder: str | os.PathLike[str], split: str) -> dict[str, Any] | None:
    """The report of ``split``, or None when it was not evaluated; an unreadable file is a
    UserError naming it."""
    path = report_path(folder, split)
    if not path.is_file():
        return None
    remedy = "materialize the evaluation asset (or run `imgcls index`) again"
    return read_json_object(path, what="evaluation report", remedy=remedy)

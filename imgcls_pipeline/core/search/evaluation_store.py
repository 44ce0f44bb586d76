"""The evaluation reports: ``<split>.json`` for each evaluated split, and their markdown table.

Keys: the metrics of ``evaluate_retrieval`` (``recall@K``, ``accuracy``, ``nn_accuracy``,
``map@r``, ``per_class``, ``confusion_matrix``, ``classes``, ...), then ``split`` and
``settings`` (``min_val_recall_at_1``, the floor the asset check holds val Recall@1 to).
``imgcls evaluate --output FILE`` writes the same metrics and ``split``, then ``checkpoint``
(the file it evaluated) instead of ``settings``.
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
# Beyond this many classes the per-class table is too long to read in the UI or a terminal.
PER_CLASS_TABLE_ROWS = 50


def report_path(folder: str | os.PathLike[str], split: str) -> Path:
    return Path(folder) / f"{split}.json"


def write_evaluation(
    folder: str | os.PathLike[str],
    split: str,
    metrics: Mapping[str, Any],
    *,
    min_val_recall_at_1: float,
) -> Path:
    """The report of ``split`` in the artifacts' evaluation folder, which the asset check reads."""
    settings = {"min_val_recall_at_1": min_val_recall_at_1}
    return write_report(report_path(folder, split), metrics, split, settings=settings)


def write_report(
    path: str | os.PathLike[str], metrics: Mapping[str, Any], split: str, **extra: Any
) -> Path:
    """A report at ``path``: the metrics, ``split``, then the ``extra`` keys in their order."""
    report = {**metrics, "split": split, **extra}
    write_text_atomic(path, json.dumps(report, indent=2, ensure_ascii=False))
    return Path(path)


def read_evaluation(folder: str | os.PathLike[str], split: str) -> dict[str, Any] | None:
    """The report of ``split``, or None when it was not evaluated; an unreadable file is a
    UserError naming it."""
    path = report_path(folder, split)
    if not path.is_file():
        return None
    remedy = "materialize the evaluation asset (or run `imgcls index`) again"
    return read_json_object(path, what="evaluation report", remedy=remedy)


def metrics_markdown_table(metrics: Mapping[str, Any]) -> str:
    """The scalar metrics as one table, then per-class results, worst classes first."""
    lines = ["| metric | value |", "|---|---|"]
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float | None):
            continue
        lines.append(f"| {key} | {_format(value)} |")
    per_class = metrics.get("per_class") or {}
    if per_class:
        lines += ["", "| class | queries | accuracy | recall@1 |", "|---|---|---|---|"]
        worst = sorted(per_class.items(), key=lambda item: (item[1]["accuracy"], item[0]))
        for name, result in worst[:PER_CLASS_TABLE_ROWS]:
            lines.append(
                f"| {name.replace('|', '/')} | {result['count']} | "
                f"{_format(result['accuracy'])} | {_format(result['recall@1'])} |"
            )
        if len(worst) > PER_CLASS_TABLE_ROWS:
            lines.append(f"\n{len(worst) - PER_CLASS_TABLE_ROWS} more classes not shown.")
    return "\n".join(lines)


def _format(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.4f}"

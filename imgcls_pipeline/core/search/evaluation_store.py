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


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float | int | None]:
    """The single-number metrics (recall@K, accuracy, map@r, counts), in the report's order."""
    return {
        key: value
        for key, value in metrics.items()
        if not isinstance(value, bool) and isinstance(value, int | float | None)
    }


def per_class_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per class (class, queries, accuracy, recall@1), worst accuracy first."""
    per_class = metrics.get("per_class") or {}
    worst = sorted(per_class.items(), key=lambda item: (item[1]["accuracy"], item[0]))
    return [
        {
            "class": name,
            "queries": result["count"],
            "accuracy": result["accuracy"],
            "recall@1": result["recall@1"],
        }
        for name, result in worst
    ]


def most_confused(metrics: Mapping[str, Any], count: int = 10) -> list[dict[str, Any]]:
    """The ``count`` largest off-diagonal cells of the confusion matrix: which true class is most
    often predicted as which other class, with that count's share of the true class's queries."""
    matrix = metrics.get("confusion_matrix") or []
    classes = metrics.get("classes") or []
    cells = []
    for row, counts in enumerate(matrix):
        total = sum(counts)
        for col, n in enumerate(counts):
            if row != col and n > 0:
                cells.append((n, classes[row], classes[col], n / total))
    cells.sort(key=lambda cell: (-cell[0], str(cell[1]), str(cell[2])))
    return [
        {"true_class": true, "predicted_class": predicted, "queries": n, "share": share}
        for n, true, predicted, share in cells[:count]
    ]


def metrics_markdown_table(metrics: Mapping[str, Any]) -> str:
    """The scalar metrics as one table, then per-class results, worst classes first."""
    lines = ["| metric | value |", "|---|---|"]
    for key, value in scalar_metrics(metrics).items():
        lines.append(f"| {key} | {format_number(value)} |")
    rows = per_class_rows(metrics)
    if rows:
        lines += ["", "| class | queries | accuracy | recall@1 |", "|---|---|---|---|"]
        for row in rows[:PER_CLASS_TABLE_ROWS]:
            lines.append(
                f"| {str(row['class']).replace('|', '/')} | {row['queries']} | "
                f"{format_number(row['accuracy'])} | {format_number(row['recall@1'])} |"
            )
        if len(rows) > PER_CLASS_TABLE_ROWS:
            lines.append(f"\n{len(rows) - PER_CLASS_TABLE_ROWS} more classes not shown.")
    return "\n".join(lines)


def format_number(value: float | int | None) -> str:
    """Counts as written, rates to 4 decimals, a missing metric (e.g. no MAP@R) as n/a."""
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.4f}"

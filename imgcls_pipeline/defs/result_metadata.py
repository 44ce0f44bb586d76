"""What the training and evaluation assets, and the Recall@1 floor check, show in the UI.

Numbers are rounded, tables are table metadata (drawn inline), figures are inline PNGs one click
away; see ``defs.metadata``. matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from imgcls_pipeline.core.search.evaluation_store import (
    PER_CLASS_TABLE_ROWS,
    most_confused,
    per_class_rows,
    scalar_metrics,
)
from imgcls_pipeline.core.training.checkpoint import BEST, read_metrics
from imgcls_pipeline.core.training.results import RESULTS, results_frame
from imgcls_pipeline.defs.metadata import figure, frame_table, rounded, rounded_metadata, table

if TYPE_CHECKING:
    from imgcls_pipeline.core.search.evaluation import SplitEvaluation
    from imgcls_pipeline.core.search.report_files import Figures

MOST_CONFUSED_ROWS = 10


def evaluation_metadata(split: str, result: SplitEvaluation, files: Figures) -> dict[str, Any]:
    """One split's entries, each key prefixed ``<split>/``: the headline numbers (plotted across
    runs), the metrics table, the figures with their tables, the per-class table and the report
    page's path."""
    metrics = result.metrics
    entries: dict[str, Any] = {key: rounded(float(metrics[key])) for key in result.headline_keys}
    entries["metrics"] = table(
        [{"metric": key, "value": value} for key, value in scalar_metrics(metrics).items()]
    )
    entries["confusion_matrix"] = figure(
        files.pngs["confusion_matrix"], f"{split} confusion matrix"
    )
    entries["most_confused"] = table(
        most_confused(metrics, MOST_CONFUSED_ROWS),
        ["true_class", "predicted_class", "queries", "share"],
    )
    entries["worst_queries"] = figure(files.pngs["worst_queries"], f"{split} worst queries")
    entries["worst_queries_list"] = table(
        [
            {
                "query": row["image_path"],
                "true_class": row["class_name"],
                "predicted": row["predicted"],
                "confidence": row["confidence"],
                "nearest_classes": ", ".join(str(n["class_name"]) for n in row["neighbours"]),
            }
            for row in result.worst_rows
        ],
        ["query", "true_class", "predicted", "confidence", "nearest_classes"],
    )
    entries["per_class"] = table(
        per_class_rows(metrics)[:PER_CLASS_TABLE_ROWS], ["class", "queries", "accuracy", "recall@1"]
    )
    if files.html is not None:
        entries["report"] = dg.MetadataValue.path(str(files.html))
    return {f"{split}/{key}": value for key, value in entries.items()}


def floor_check_metadata(value: float, floor: float) -> dict[str, Any]:
    """The measured val Recall@1, and, when a floor is set, the floor and the headroom above it
    (a floor of 0 is "no floor": plotting it would draw a flat line at 0)."""
    if floor <= 0:
        return {
            "val_recall@1": rounded(value),
            "floor": dg.MetadataValue.text("none (min_val_recall_at_1 is 0)"),
        }
    return {
        "val_recall@1": rounded(value),
        "floor": rounded(floor),
        "headroom": rounded(value - floor),
    }


def training_metadata(reported: Mapping[str, Any], checkpoint_dir: Path) -> dict[str, Any]:
    """The training process's own metadata, rounded, then the training curve (loss, Recall@K,
    learning rate and margin), the epochs table, the best model's figures on val, and paths."""
    from imgcls_pipeline.core.search.report import training_curve_png  # matplotlib: lazily
    from imgcls_pipeline.core.search.report_files import CONFUSION, CURVE, WORST

    metadata = rounded_metadata(reported)
    history = read_metrics(checkpoint_dir)
    if not history.empty:
        metadata["training_curve"] = figure(training_curve_png(history), "training curve")
        results = results_frame(history)
        recalls = [c for c in results.columns if c.startswith("val_recall@")]
        shown = ["epoch", "phase", "train_loss", *recalls, "lr", "margin", "seconds", "saved_best"]
        metadata["epochs"] = frame_table(results[[c for c in shown if c in results]], index=False)
    for key, name in (("val_confusion_matrix", CONFUSION), ("val_worst_queries", WORST)):
        path = checkpoint_dir / name
        if path.is_file():
            metadata[key] = figure(path.read_bytes(), f"best model: {key.replace('_', ' ')}")
    for key, name in (("results_csv", RESULTS), ("training_curve_file", CURVE)):
        if (checkpoint_dir / name).is_file():
            metadata[key] = dg.MetadataValue.path(str(checkpoint_dir / name))
    metadata["checkpoint"] = dg.MetadataValue.path(str(checkpoint_dir / BEST))
    return metadata

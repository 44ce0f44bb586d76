"""``results.csv``: the training's ``metrics.csv`` with three columns a reader asks for first.

``metrics.csv`` is the training's own record (rewritten from the checkpoint, read back on resume);
``results.csv`` is for people and spreadsheets, derived from it row for row, so every column of
``metrics.csv`` (whatever a later version adds) is there too, in its order, followed by:

- ``elapsed_seconds``: training time from the first epoch to the end of this one (sum of
  ``seconds``; time spent between a stop and its resume is not counted)
- ``best_val_recall@1``: the best val Recall@1 up to this epoch
- ``saved_best``: true for the epochs that wrote best_model.pt (a strictly higher val Recall@1
  than every epoch before); the last such row is the epoch best_model.pt holds
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from imgcls_pipeline.core.atomic import write_csv_atomic
from imgcls_pipeline.core.training.checkpoint import read_metrics

RESULTS = "results.csv"
DERIVED_COLUMNS = ("elapsed_seconds", "best_val_recall@1", "saved_best")


def results_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` (rows of metrics.csv, as numbers) with the derived columns appended."""
    frame = metrics.copy()
    frame["elapsed_seconds"] = pd.to_numeric(frame["seconds"], errors="coerce").cumsum().round(3)
    recall = pd.to_numeric(frame["val_recall@1"], errors="coerce")
    best = recall.cummax()
    frame["best_val_recall@1"] = best
    before = best.shift(fill_value=float("-inf")).fillna(float("-inf"))
    frame["saved_best"] = recall > before
    return frame


def write_results(checkpoint_dir: str | Path, metrics: pd.DataFrame | None = None) -> Path | None:
    """results.csv of ``checkpoint_dir`` rewritten (atomically) from ``metrics``, by default its
    metrics.csv; None, and no file, before the first epoch."""
    if metrics is None:
        metrics = read_metrics(checkpoint_dir)
    path = Path(checkpoint_dir) / RESULTS
    if metrics.empty:
        path.unlink(missing_ok=True)
        return None
    write_csv_atomic(path, results_frame(metrics))
    return path

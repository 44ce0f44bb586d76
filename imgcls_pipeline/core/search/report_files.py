"""The files a person opens to look at results, written beside the machine-readable ones.

Training, in its checkpoint folder (as Ultralytics does in its run folder):

- ``results.csv`` (see ``core.training.results``) and ``training_curve.png`` (train loss,
  val Recall@K, learning rate and margin per epoch): rewritten after every epoch
- ``confusion_matrix.png`` and ``worst_queries.png``: best_model.pt on the val split with train
  as the gallery (exact search, no flip or re-ranking: what the training's val Recall@1
  measured), drawn when training ends

Evaluation, beside its ``<name>.json``: ``<name>.html`` (one self-contained page: metrics,
figures, most confused classes, worst queries, per-class table), ``<name>_confusion_matrix.png``
and ``<name>_worst_queries.png``.

Every file is written atomically: a reader sees the previous version or the new one.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgcls_pipeline.core.atomic import is_orphan_temp_file, write_atomic, write_text_atomic
from imgcls_pipeline.core.search.report import (
    confusion_matrix_png,
    training_curve_png,
    worst_queries_png,
)
from imgcls_pipeline.core.search.report_html import evaluation_html
from imgcls_pipeline.core.settings import PipelineConfig
from imgcls_pipeline.core.training.checkpoint import BEST, read_metrics
from imgcls_pipeline.core.training.results import RESULTS, write_results

if TYPE_CHECKING:
    import torch

CURVE = "training_curve.png"
CONFUSION = "confusion_matrix.png"
WORST = "worst_queries.png"


@dataclass
class Figures:
    """What was written: each figure's PNG bytes (for the UI) and path, by the same name."""

    pngs: dict[str, bytes] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    html: Path | None = None

    def add(self, name: str, path: Path, png: bytes) -> None:
        write_atomic(path, lambda handle: handle.write(png))
        self.pngs[name], self.paths[name] = png, path


def write_epoch_files(checkpoint_dir: str | os.PathLike[str]) -> Figures:
    """results.csv and training_curve.png from the folder's metrics.csv (about 0.3 s); nothing
    before the first epoch."""
    folder = Path(checkpoint_dir)
    _remove_leftovers(folder, [RESULTS, CURVE])
    figures = Figures()
    history = read_metrics(folder)
    if write_results(folder, history) is not None:
        figures.add("training_curve", folder / CURVE, training_curve_png(history))
    return figures


def write_training_files(
    checkpoint_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    splits_dir: str | os.PathLike[str],
    config: PipelineConfig,
    *,
    device: torch.device | None = None,
    num_workers: int = 0,
) -> Figures:
    """Everything above for a training that has ended: the epoch files, and the best model's
    figures unless they are already newer than best_model.pt (a run with nothing left to train
    does not embed the data again)."""
    folder = Path(checkpoint_dir)
    figures = write_epoch_files(folder)
    best = folder / BEST
    if not best.is_file():
        return figures
    drawn = [folder / CONFUSION, folder / WORST]
    if all(p.is_file() and p.stat().st_mtime_ns > best.stat().st_mtime_ns for p in drawn):
        figures.paths.update(confusion_matrix=drawn[0], worst_queries=drawn[1])
        return figures
    # Figures older than best_model.pt are another model's: never leave them beside this one,
    # even when drawing the new ones fails (a photo gone since training, say).
    for stale in drawn:
        stale.unlink(missing_ok=True)
    best_figures = write_best_model_files(
        folder, data_dir, splits_dir, config, device=device, num_workers=num_workers
    )
    figures.pngs.update(best_figures.pngs)
    figures.paths.update(best_figures.paths)
    return figures


def write_best_model_files(
    checkpoint_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    splits_dir: str | os.PathLike[str],
    config: PipelineConfig,
    *,
    device: torch.device | None = None,
    num_workers: int = 0,
) -> Figures:
    """confusion_matrix.png and worst_queries.png of the folder's best_model.pt on val."""
    # torch, timm and faiss: only when a model is to be run, not to write a curve.
    from imgcls_pipeline.core.data.split_files import read_split
    from imgcls_pipeline.core.search.evaluation import evaluate_split
    from imgcls_pipeline.core.search.index import build_index
    from imgcls_pipeline.core.search.inference import embed_frame, load_model

    folder = Path(checkpoint_dir)
    _remove_leftovers(folder, [CONFUSION, WORST])
    loaded = load_model(folder / BEST, device)
    gallery, queries = read_split(splits_dir, "train"), read_split(splits_dir, "val")
    batch = config.evaluation.embedding_batch_size
    vectors = [
        embed_frame(loaded, frame, data_dir, batch_size=batch, num_workers=num_workers)
        for frame in (gallery, queries)
    ]
    result = evaluate_split(
        queries,
        vectors[1],
        build_index(vectors[0]),
        gallery,
        recall_k_values=config.evaluation.recall_k_values,
        top_k=config.evaluation.top_k,
    )
    figures = Figures()
    matrix = result.metrics["confusion_matrix"]
    figures.add(
        "confusion_matrix",
        folder / CONFUSION,
        confusion_matrix_png(matrix, result.metrics["classes"]),
    )
    figures.add("worst_queries", folder / WORST, worst_queries_png(result.worst_rows, data_dir))
    return figures


def write_evaluation_files(
    json_path: str | os.PathLike[str],
    report: Mapping[str, Any],
    worst_rows: Sequence[Mapping[str, Any]],
    data_dir: str | os.PathLike[str],
) -> Figures:
    """The figures and HTML page of the evaluation report written at ``json_path``."""
    json_path = Path(json_path)
    stem = json_path.with_suffix("")
    figures = Figures()
    figures.add(
        "confusion_matrix",
        stem.with_name(f"{stem.name}_confusion_matrix.png"),
        confusion_matrix_png(report["confusion_matrix"], report["classes"]),
    )
    figures.add(
        "worst_queries",
        stem.with_name(f"{stem.name}_worst_queries.png"),
        worst_queries_png(worst_rows, data_dir),
    )
    captions = {
        "confusion_matrix": "Confusion matrix (rows: true class; colour: share of its queries)",
        "worst_queries": "Worst queries and their nearest gallery photos (red: another class)",
    }
    page = evaluation_html(
        report, {captions[name]: png for name, png in figures.pngs.items()}, worst_rows
    )
    figures.html = json_path.with_suffix(".html")
    write_text_atomic(figures.html, page)
    return figures


def _remove_leftovers(folder: Path, names: Sequence[str]) -> None:
    """Temporary files of these names that a killed run left: the same rule as the folder
    lock's clean-up (``is_orphan_temp_file``), never a live writer's; the training that writes
    these holds the checkpoint folder's lock, so a file without a writer in its name is stale."""
    for name in names:
        for leftover in folder.glob(f".{glob.escape(name)}.*.tmp"):
            if is_orphan_temp_file(leftover.name, unnamed_too=True):
                leftover.unlink(missing_ok=True)

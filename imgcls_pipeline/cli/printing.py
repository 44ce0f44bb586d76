"""What the commands print after their work: split counts, training history, evaluation tables."""

from __future__ import annotations

from imgcls_pipeline.core.data.split_files import read_excluded, read_splits
from imgcls_pipeline.core.data.splitting import SPLITS, count_table
from imgcls_pipeline.core.folders import FolderPaths
from imgcls_pipeline.core.search import evaluation_store
from imgcls_pipeline.core.training import checkpoint


def print_split_summary(paths: FolderPaths) -> None:
    tables = read_splits(paths.splits, SPLITS)
    excluded = read_excluded(paths.splits)
    print(f"\nSplits written to {paths.splits}/ (IDs per class and split):")
    print(count_table(tables).to_string())
    images = {split: len(table) for split, table in tables.items()}
    print("images: " + ", ".join(f"{split} {count}" for split, count in images.items()))
    if len(excluded):
        reasons = excluded["reason"].value_counts()
        print(
            f"excluded {len(excluded)} file(s), see excluded.csv: "
            + ", ".join(f"{reason} {count}" for reason, count in reasons.items())
        )


def print_training_summary(paths: FolderPaths) -> None:
    history = checkpoint.read_metrics(paths.checkpoints)
    if not history.empty:
        print(f"\nTraining history ({paths.checkpoints / checkpoint.METRICS}):")
        print(history.tail(10).to_string(index=False))
    print(f"best model: {paths.checkpoints / checkpoint.BEST}")


def print_evaluation(paths: FolderPaths, splits: list[str]) -> None:
    folder = paths.artifacts / evaluation_store.FOLDER
    for split in splits:
        report = evaluation_store.read_evaluation(folder, split)
        if report is not None:
            print(f"\n{split} ({evaluation_store.report_path(folder, split)}):")
            print(evaluation_store.metrics_markdown_table(report))

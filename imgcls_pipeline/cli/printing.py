"""What the commands print after their work: split counts, training history, evaluation tables."""

from __future__ import annotations

import json

from imgcls_pipeline.core.folders import FolderPaths


def print_split_summary(paths: FolderPaths) -> None:
    import pandas as pd

    from imgcls_pipeline.core.data.split_files import read_split
    from imgcls_pipeline.core.data.splitting import SPLITS, count_table

    tables = {split: read_split(paths.splits, split) for split in SPLITS}
    excluded = pd.read_csv(paths.splits / "excluded.csv", dtype=str, keep_default_na=False)
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
    import pandas as pd

    metrics_file = paths.checkpoints / "metrics.csv"
    if metrics_file.is_file():
        history = pd.read_csv(metrics_file)
        print(f"\nTraining history ({metrics_file}):")
        print(history.tail(10).to_string(index=False))
    print(f"best model: {paths.checkpoints / 'best_model.pt'}")


def print_evaluation(paths: FolderPaths, splits: list[str]) -> None:
    from imgcls_pipeline.core.search.report import metrics_markdown_table

    for split in splits:
        report_file = paths.artifacts / "evaluation" / f"{split}.json"
        if report_file.is_file():
            print(f"\n{split} ({report_file}):")
            print(metrics_markdown_table(json.loads(report_file.read_text())))

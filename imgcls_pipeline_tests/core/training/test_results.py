import pandas as pd

from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline.core.training.results import RESULTS, results_frame, write_results

ROWS = [
    {"epoch": 1, "phase": "warmup", "margin": 0.0, "lr": 1e-3, "train_loss": 3.0,
     "val_recall@1": 0.50, "val_recall@5": 0.8, "seconds": 10.0, "skipped_images": 0},
    {"epoch": 2, "phase": "finetune", "margin": 0.5, "lr": 9e-4, "train_loss": 2.0,
     "val_recall@1": 0.75, "val_recall@5": 0.9, "seconds": 12.5, "skipped_images": 1},
    {"epoch": 3, "phase": "finetune", "margin": 0.5, "lr": 8e-4, "train_loss": 1.5,
     "val_recall@1": 0.75, "val_recall@5": 0.95, "seconds": 11.0, "skipped_images": 0},
    {"epoch": 4, "phase": "finetune", "margin": 0.5, "lr": 7e-4, "train_loss": 1.4,
     "val_recall@1": 0.70, "val_recall@5": 0.95, "seconds": 11.0, "skipped_images": 0},
]  # fmt: skip


def test_results_keep_every_metrics_column_in_order_and_add_the_derived_ones():
    frame = results_frame(pd.DataFrame(ROWS))
    assert list(frame.columns) == [
        *ROWS[0],
        "elapsed_seconds",
        "best_val_recall@1",
        "saved_best",
    ]
    assert frame["elapsed_seconds"].tolist() == [10.0, 22.5, 33.5, 44.5]
    assert frame["best_val_recall@1"].tolist() == [0.5, 0.75, 0.75, 0.75]
    # A tie does not replace best_model.pt (the loop keeps the first epoch that reached it).
    assert frame["saved_best"].tolist() == [True, True, False, False]


def test_results_csv_is_rewritten_from_metrics_csv_and_removed_before_any_epoch(tmp_path):
    ckpt.write_metrics_csv(tmp_path / ckpt.METRICS, ROWS)
    assert write_results(tmp_path) == tmp_path / RESULTS
    written = pd.read_csv(tmp_path / RESULTS)
    assert written["epoch"].tolist() == [1, 2, 3, 4]
    assert written["saved_best"].tolist() == [True, True, False, False]
    assert written["lr"].tolist() == [1e-3, 9e-4, 8e-4, 7e-4]
    ckpt.write_metrics_csv(tmp_path / ckpt.METRICS, [])  # a fresh start removes metrics.csv
    assert write_results(tmp_path) is None
    assert not (tmp_path / RESULTS).exists()

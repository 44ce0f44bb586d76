import dagster as dg
import pytest

from imgcls_pipeline.core.lifecycle.bundle_files import Bundle, write_bundle_file
from imgcls_pipeline.core.search import evaluation_store
from imgcls_pipeline.core.search.evaluation import SplitEvaluation
from imgcls_pipeline.core.search.report_files import Figures
from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline.defs.result_metadata import evaluation_metadata, training_metadata
from imgcls_pipeline.defs.search_assets import val_recall_at_1_floor

METRICS = {
    "recall@1": 0.8541666666666666,
    "recall@5": 1.0,
    "accuracy": 0.75,
    "nn_accuracy": 0.8541666666666666,
    "map@r": None,
    "num_queries": 4,
    "per_class": {
        "cat": {"accuracy": 1.0, "recall@1": 1.0, "count": 2},
        "dog": {"accuracy": 0.5, "recall@1": 0.7083333333, "count": 2},
    },
    "confusion_matrix": [[2, 0], [1, 1]],
    "classes": ["cat", "dog"],
}


def floor_check(tmp_path, floor: float) -> dg.AssetCheckResult:
    """The check on the served bundle's val report (the bundle holds only that report here)."""
    bundle = Bundle(
        tmp_path / "artifacts" / "bundles" / "b1", "b1", "v0001", "0", "", False, "flat", 8
    )
    bundle.folder.mkdir(parents=True)
    write_bundle_file(bundle.folder, bundle)
    (tmp_path / "artifacts" / "served").symlink_to("bundles/b1")
    folder = bundle.folder / evaluation_store.FOLDER
    evaluation_store.write_evaluation(folder, "val", METRICS, min_val_recall_at_1=floor)
    paths = PipelinePaths(
        data_dir=str(tmp_path),
        splits_dir=str(tmp_path),
        checkpoint_dir=str(tmp_path),
        artifacts_dir=str(tmp_path / "artifacts"),
    )
    return val_recall_at_1_floor(paths=paths)


def test_the_floor_check_records_the_measured_recall_and_the_headroom(tmp_path):
    result = floor_check(tmp_path, 0.9)
    assert not result.passed
    values = {key: value.value for key, value in result.metadata.items()}
    assert values == {"val_recall@1": 0.8542, "floor": 0.9, "headroom": -0.0458}
    assert result.description == "val Recall@1 0.8542 of v0001 is below min_val_recall_at_1 0.9."


def test_a_floor_of_zero_is_not_plotted_as_a_flat_line(tmp_path):
    result = floor_check(tmp_path, 0.0)
    assert result.passed
    assert result.metadata["val_recall@1"] == dg.MetadataValue.float(0.8542)
    # Only numbers are plotted: "no floor" is said in words.
    assert isinstance(result.metadata["floor"], dg.TextMetadataValue)


def test_evaluation_metadata_rounds_numbers_and_shows_tables_inline(tmp_path):
    rows = [
        {
            "image_path": "dog/d_1.jpg",
            "class_name": "dog",
            "predicted": "cat",
            "confidence": 2 / 3,
            "neighbours": [{"image_path": "cat/c_1.jpg", "class_name": "cat", "distance": 0.25}],
        }
    ]
    result = SplitEvaluation(dict(METRICS), ["recall@1", "recall@5", "accuracy"], rows)
    files = Figures(pngs={"confusion_matrix": b"png1", "worst_queries": b"png2"})
    files.html = tmp_path / "val.html"
    entries = evaluation_metadata("val", result, files)
    assert entries["val/recall@1"] == 0.8542 and entries["val/accuracy"] == 0.75
    for key in ("metrics", "per_class", "most_confused", "worst_queries_list"):
        assert isinstance(entries[f"val/{key}"], dg.TableMetadataValue), key
    metrics = {r.data["metric"]: r.data["value"] for r in entries["val/metrics"].records}
    assert metrics["recall@1"] == 0.8542 and metrics["num_queries"] == 4
    assert metrics["map@r"] is None
    per_class = [r.data for r in entries["val/per_class"].records]
    assert per_class[0] == {"class": "dog", "queries": 2, "accuracy": 0.5, "recall@1": 0.7083}
    (confused,) = [r.data for r in entries["val/most_confused"].records]
    assert confused == {"true_class": "dog", "predicted_class": "cat", "queries": 1, "share": 0.5}
    (worst,) = [r.data for r in entries["val/worst_queries_list"].records]
    assert worst["confidence"] == 0.6667 and worst["nearest_classes"] == "cat"
    for key in ("confusion_matrix", "worst_queries"):
        assert entries[f"val/{key}"].value.startswith("![val "), key
    assert entries["val/report"] == dg.MetadataValue.path(str(tmp_path / "val.html"))


@pytest.mark.parametrize("with_figures", [True, False])
def test_training_metadata_has_the_curve_the_epochs_table_and_rounded_numbers(
    tmp_path, with_figures
):
    rows = [
        {"epoch": e, "phase": "warmup", "margin": 0.0, "lr": 1e-3 / e, "train_loss": 2 / 3,
         "val_recall@1": 0.123456, "val_recall@5": 0.5, "seconds": 1.0}
        for e in (1, 2)
    ]  # fmt: skip
    ckpt.write_metrics_csv(tmp_path / ckpt.METRICS, rows)
    if with_figures:
        (tmp_path / "confusion_matrix.png").write_bytes(b"cm")
        (tmp_path / "worst_queries.png").write_bytes(b"wq")
    reported = {
        "final_val_recall@1": dg.MetadataValue.float(0.123456),
        "final_train_loss": 0.6666666,
        "last_epoch": dg.MetadataValue.int(2),
        "gpu_count": 0,
    }
    metadata = training_metadata(reported, tmp_path)
    assert metadata["final_val_recall@1"] == dg.MetadataValue.float(0.1235)
    assert metadata["final_train_loss"] == 0.6667
    assert metadata["last_epoch"] == dg.MetadataValue.int(2) and metadata["gpu_count"] == 0
    assert "data:image/png;base64," in metadata["training_curve"].value
    epochs = metadata["epochs"]
    assert isinstance(epochs, dg.TableMetadataValue)
    assert [r.data["epoch"] for r in epochs.records] == [1, 2]
    assert [c.name for c in epochs.schema.columns] == [
        "epoch", "phase", "train_loss", "val_recall@1", "val_recall@5", "lr", "margin", "seconds",
        "saved_best",
    ]  # fmt: skip
    assert epochs.records[1].data["lr"] == 0.0005 and epochs.records[0].data["saved_best"] is True
    assert ("val_confusion_matrix" in metadata) is with_figures
    assert ("val_worst_queries" in metadata) is with_figures
    assert metadata["checkpoint"] == dg.MetadataValue.path(str(tmp_path / ckpt.BEST))

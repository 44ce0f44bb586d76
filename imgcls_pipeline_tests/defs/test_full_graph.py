"""The whole asset graph on a tiny dataset through ``dagster asset materialize --select '*'``,
then ``imgcls evaluate`` and ``imgcls predict`` on the model it trained."""

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from imgcls_pipeline.cli import main
from imgcls_pipeline.core.data.example_data import make_example_dataset
from imgcls_pipeline_tests.dagster_cli import folder_flags, materialize

TINY_TRAINING = {
    "backbone": "test_efficientnet",
    "pretrained": False,
    "image_size": 64,
    "embedding_dim": 32,
    "warmup_epochs": 1,
    "total_epochs": 2,
    "samples_per_class": 4,
    "num_workers": 0,
    "learning_rate": 0.002,
    "arcface_s": 30.0,
    "arcface_m_finetune": 0.3,
}
RUN_CONFIG = f"""
ops:
  id_groups: {{config: {{min_image_size: 64}}}}
  trained_checkpoint: {{config: {json.dumps(TINY_TRAINING)}}}
  embeddings: {{config: {{embedding_batch_size: 16}}}}
  evaluation: {{config: {{top_k: 5, eval_splits: [val, test], min_val_recall_at_1: 0.0}}}}
"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    make_example_dataset(root / "data", ids_per_class=4, photos_per_id=2, size=64)
    done = materialize(root, "*", RUN_CONFIG)
    assert done.returncode == 0, done.stderr[-4000:]
    return root


@pytest.mark.slow
def test_every_asset_materialized_with_its_files(pipeline: Path) -> None:
    with dg.DagsterInstance.from_config(str(pipeline)) as instance:
        for key in (
            "image_manifest",
            "id_groups",
            "splits",
            "trained_checkpoint",
            "embeddings",
            "faiss_index",
            "evaluation",
        ):
            assert instance.get_latest_materialization_event(dg.AssetKey(key)), key
        training = instance.get_latest_materialization_event(
            dg.AssetKey("trained_checkpoint")
        ).asset_materialization.metadata
        assert (
            "training_curve" in training
            and "data:image/png;base64" in training["training_curve"].value
        )
        assert training["precision"].value == "fp32"
        assert training["hardware"].value["device"] == "cpu"
        evaluation = instance.get_latest_materialization_event(
            dg.AssetKey("evaluation")
        ).asset_materialization.metadata
        assert "val/confusion_matrix" in evaluation and "val/worst_queries" in evaluation
        assert isinstance(evaluation["val/metrics"], dg.TableMetadataValue)
        assert isinstance(evaluation["val/per_class"], dg.TableMetadataValue)
        recall = evaluation["val/recall@1"].value
        assert recall == round(recall, 4)
        assert isinstance(training["epochs"], dg.TableMetadataValue)
        assert "data:image/png;base64" in training["val_confusion_matrix"].value

    for name in ("best_model.pt", "latest_model.pt", "metrics.csv", "results.csv"):
        assert (pipeline / "checkpoints" / name).is_file()
    pngs = [pipeline / "checkpoints" / n for n in ("training_curve.png", "confusion_matrix.png")]
    for split in ("val", "test"):
        folder = pipeline / "artifacts" / "evaluation"
        pngs += [folder / f"{split}_confusion_matrix.png", folder / f"{split}_worst_queries.png"]
        page = (folder / f"{split}.html").read_text(encoding="utf-8")
        assert "<h2>Metrics</h2>" in page and page.count("data:image/png;base64,") == 2
    for path in pngs:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), path
    for split in ("train", "val", "test"):
        vectors = np.load(pipeline / "artifacts" / "embeddings" / f"{split}.npy")
        rows = pd.read_csv(pipeline / "splits" / f"{split}.csv")
        assert vectors.dtype == np.float32 and len(vectors) == len(rows)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    gallery = pd.read_csv(pipeline / "artifacts" / "index" / "gallery.csv")
    assert list(gallery.columns[:3]) == ["image_path", "class_name", "object_id"]
    for split in ("val", "test"):
        report = json.loads((pipeline / "artifacts" / "evaluation" / f"{split}.json").read_text())
        for key in ("recall@1", "recall@5", "accuracy", "map@r", "per_class"):
            assert key in report


def evaluate_command(pipeline: Path, output: Path, *flags: str) -> int:
    """``imgcls evaluate`` of the pipeline's best model on val, top_k 5, report to ``output``."""
    return main(
        [
            "evaluate",
            "--checkpoint",
            str(pipeline / "checkpoints" / "best_model.pt"),
            "--split",
            "val",
            "--data_dir",
            str(pipeline / "data"),
            "--splits_dir",
            str(pipeline / "splits"),
            "--output",
            str(output),
            "--top_k",
            "5",
            *flags,
        ]
    )


@pytest.mark.slow
def test_evaluate_command_matches_the_asset(pipeline: Path, capsys) -> None:
    output = pipeline / "eval_val.json"
    code = evaluate_command(pipeline, output)
    assert code == 0
    assert "| recall@1 |" in capsys.readouterr().out
    mine = json.loads(output.read_text())
    asset = json.loads((pipeline / "artifacts" / "evaluation" / "val.json").read_text())
    for key in ("recall@1", "recall@5", "accuracy", "nn_accuracy"):
        assert mine[key] == pytest.approx(asset[key], abs=1e-6)
    # As the asset does: the figures and a self-contained HTML page beside the JSON.
    page = output.with_suffix(".html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
    assert (pipeline / "eval_val_confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_evaluate_applies_flip_tta_and_rerank_as_the_core_does(pipeline: Path, capsys) -> None:
    from imgcls_pipeline.core.data.split_files import read_split
    from imgcls_pipeline.core.search.evaluation import evaluate_split
    from imgcls_pipeline.core.search.index import build_index
    from imgcls_pipeline.core.search.inference import embed_frame, load_model
    from imgcls_pipeline.core.settings import RerankSettings

    checkpoint = pipeline / "checkpoints" / "best_model.pt"
    output = pipeline / "eval_val_tta_rerank.json"
    flags = ["--flip_tta", "true", "--rerank", "dba_alpha_qe", "--rerank_k", "2"]
    code = evaluate_command(pipeline, output, *flags)
    assert code == 0
    loaded = load_model(checkpoint)
    gallery, queries = (read_split(pipeline / "splits", s) for s in ("train", "val"))
    vectors = [embed_frame(loaded, f, pipeline / "data", flip_tta=True) for f in (gallery, queries)]
    expected = evaluate_split(
        queries,
        vectors[1],
        build_index(vectors[0]),
        gallery,
        top_k=5,
        rerank=RerankSettings(rerank="dba_alpha_qe", rerank_k=2),
    ).metrics
    mine = json.loads(output.read_text())
    for key in ("recall@1", "recall@5", "accuracy", "map@r"):
        assert mine[key] == pytest.approx(expected[key], abs=1e-6)
    # The flags did reach the command: its plain evaluation (the asset's) ranks differently.
    plain = json.loads((pipeline / "artifacts" / "evaluation" / "val.json").read_text())
    assert mine["map@r"] != pytest.approx(plain["map@r"], abs=1e-9)


@pytest.mark.slow
def test_predict_answers_good_files_and_names_bad_ones(pipeline: Path, capsys) -> None:
    photo = next((pipeline / "data" / "star").glob("*.jpg"))
    broken = pipeline / "broken.jpg"
    broken.write_bytes(b"not an image")
    output = pipeline / "predictions.csv"
    code = main(
        [
            "predict",
            "--checkpoint",
            str(pipeline / "checkpoints" / "best_model.pt"),
            "--artifacts_dir",
            str(pipeline / "artifacts"),
            "--models_dir",
            str(pipeline / "models"),
            "--top_k",
            "3",
            "--output",
            str(output),
            str(photo),
            str(broken),
            str(pipeline / "data" / "circle"),
        ]
    )
    assert code == 1  # one file could not be read
    table = pd.read_csv(output, keep_default_na=False)
    assert len(table) == 2 + len(list((pipeline / "data" / "circle").glob("*.jpg")))
    rows = table.set_index("image_path")
    assert rows.loc[str(broken), "error"] != "" and rows.loc[str(broken), "predicted_class"] == ""
    assert rows.loc[str(photo), "predicted_class"] in {"circle", "square", "triangle", "star"}
    assert [c for c in table.columns if c.startswith("neighbour_3_")] == [
        "neighbour_3_path",
        "neighbour_3_class",
        "neighbour_3_similarity",
    ]
    assert "neighbour_4_path" not in table.columns
    assert 0 < float(rows.loc[str(photo), "neighbour_1_similarity"]) <= 1.0001
    assert "ERROR" in capsys.readouterr().out


@pytest.mark.slow
def test_predict_refuses_an_index_of_another_model(pipeline: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other.pt"
    shutil.copy(pipeline / "checkpoints" / "latest_model.pt", other)
    with open(other, "ab") as handle:
        handle.write(b"\0")  # different bytes: not the checkpoint the index was built from
    code = main(
        [
            "predict",
            "--checkpoint",
            str(other),
            "--artifacts_dir",
            str(pipeline / "artifacts"),
            "--models_dir",
            str(pipeline / "models"),
            str(pipeline / "data"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "is not the one the bundle" in err and "--index_dir" in err


@pytest.mark.slow
def test_embeddings_do_no_work_when_nothing_changed(pipeline: Path) -> None:
    vectors = pipeline / "artifacts" / "embeddings" / "train.npy"
    before = vectors.stat().st_mtime_ns
    folders = folder_flags(pipeline)
    assert main(["index", *folders, "--top_k", "5"]) == 0
    assert vectors.stat().st_mtime_ns == before


@pytest.mark.slow
def test_train_command_reports_a_refused_resume_in_one_line(pipeline: Path, capsys) -> None:
    folders = folder_flags(pipeline, "data_dir", "splits_dir", "checkpoint_dir")
    code = main(
        [
            "train",
            *folders,
            "--backbone",
            "tf_efficientnetv2_b0",
            "--pretrained=false",
            "--image_size",
            "64",
            "--num_workers",
            "0",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Stack Trace" not in err
    assert err.strip().splitlines()[-1].startswith("error: Cannot resume from")
    assert "--fresh" in err

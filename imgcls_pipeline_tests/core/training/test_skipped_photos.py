"""A photo that vanishes during a long run does not end it; one missing before it starts stops
it before any model is built."""

from __future__ import annotations

import pandas as pd
import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.search.inference import embed_frame, load_model
from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline.core.training import loop
from imgcls_pipeline.train_script import materialization_metadata
from imgcls_pipeline_tests.core.training.tiny_training import (
    cpu_hardware,
    make_tiny_splits,
    tiny_config,
)


def train(data_dir, splits_dir, checkpoint_dir, **kwargs):
    return loop.train(
        tiny_config(total_epochs=2),
        data_dir=data_dir,
        splits_dir=splits_dir,
        checkpoint_dir=checkpoint_dir,
        hardware=cpu_hardware(),
        **kwargs,
    )


def test_a_photo_deleted_mid_training_is_skipped_counted_and_reported(tmp_path):
    data_dir, splits_dir = make_tiny_splits(tmp_path)
    victim = data_dir / "class_0" / "c0id000_1.jpg"  # a train photo
    lines: list[str] = []

    def delete_after_epoch_one(row: dict) -> None:
        if row["epoch"] == 1:
            victim.unlink()

    result = train(
        data_dir,
        splits_dir,
        tmp_path / "ckpt",
        on_epoch_end=delete_after_epoch_one,
        log=lines.append,
    )
    assert result.last_epoch == 2 and not result.interrupted
    metrics = ckpt.read_metrics(tmp_path / "ckpt")
    assert metrics["skipped_images"].tolist() == [0, 1]
    assert list(result.skipped_images) == [str(victim)]
    assert "FileNotFoundError" in result.skipped_images[str(victim)]
    warnings = [line for line in lines if line.startswith("Skipped photo")]
    assert len(warnings) == 1 and str(victim) in warnings[0]  # once, though read many times
    assert "1 photos skipped" in next(line for line in lines if line.startswith("epoch 2/2"))
    metadata = materialization_metadata(result)
    assert metadata["skipped_images"] == 1
    assert str(victim) in metadata["skipped_image_files"]["raw_value"]

    # Embedding may not stand one photo in for another (row i is photo i): it names the photo.
    loaded = load_model(tmp_path / "ckpt" / ckpt.BEST)
    train_frame = pd.read_csv(splits_dir / "train.csv", dtype={"object_id": str})
    with pytest.raises(UserError, match=r"^1 photos listed .* while embedding them: .*c0id000_1"):
        embed_frame(loaded, train_frame, data_dir, batch_size=4)


def test_a_photo_missing_before_training_stops_it_before_any_model_is_built(tmp_path, monkeypatch):
    data_dir, splits_dir = make_tiny_splits(tmp_path)
    (data_dir / "class_2" / "c2id002_2.jpg").unlink()  # a val photo

    def never(*_args, **_kwargs):
        raise AssertionError("the model was built before the photos were checked")

    monkeypatch.setattr(loop, "build_embedding_model", never)
    with pytest.raises(UserError, match=r"val\.csv: class_2/c2id002_2\.jpg \(missing\)"):
        train(data_dir, splits_dir, tmp_path / "ckpt", log=lambda _: None)


def test_leakage_stops_training_before_any_model_is_built(tmp_path, monkeypatch):
    data_dir, splits_dir = make_tiny_splits(tmp_path)
    train_rows = (splits_dir / "train.csv").read_text().splitlines()
    with open(splits_dir / "test.csv", "a") as test_csv:
        test_csv.write(train_rows[1] + "\n")
    monkeypatch.setattr(loop, "build_embedding_model", lambda *_: pytest.fail("model built"))
    with pytest.raises(UserError, match=r"is in two splits, .*train\.csv line 2 and .*test\.csv"):
        train(data_dir, splits_dir, tmp_path / "ckpt", log=lambda _: None)

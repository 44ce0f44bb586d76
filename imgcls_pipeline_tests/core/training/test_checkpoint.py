import random

import numpy as np
import pytest
import torch

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline.core.training.rng import capture_rng_state, restore_rng_state
from imgcls_pipeline_tests.core.training.tiny_training import tiny_config


def write_splits(folder, train="a,b\n1,2\n", val="a,b\n3,4\n"):
    folder.mkdir(exist_ok=True)
    (folder / "train.csv").write_text(train)
    (folder / "val.csv").write_text(val)
    return folder


def test_splits_fingerprint_follows_train_and_val_bytes(tmp_path):
    first = ckpt.splits_fingerprint(write_splits(tmp_path / "a"))
    assert first == ckpt.splits_fingerprint(write_splits(tmp_path / "b"))
    assert first != ckpt.splits_fingerprint(write_splits(tmp_path / "c", val="a,b\n3,5\n"))
    assert first != ckpt.splits_fingerprint(write_splits(tmp_path / "d", train="a,b\n1,3\n"))
    (tmp_path / "a" / "val.csv").unlink()
    with pytest.raises(UserError, match=r"val\.csv"):
        ckpt.splits_fingerprint(tmp_path / "a")


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / ckpt.LATEST
    ckpt.save_checkpoint(path, {"format": ckpt.FORMAT, "epoch": 1})

    def crash(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(path, {"format": ckpt.FORMAT, "epoch": 2})
    assert ckpt.read_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.LATEST]


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / f".{ckpt.LATEST}.abc123.tmp").write_bytes(b"partial")
    (tmp_path / "keep.tmp").write_bytes(b"not ours")
    ckpt.remove_stale_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tmp"]


def test_random_states_survive_a_weights_only_round_trip(tmp_path):
    path = tmp_path / "rng.pt"
    torch.save(capture_rng_state(), path)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng_state(torch.load(path, weights_only=True))
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


def saved_run(config):
    return {
        "backbone": config.model.backbone,
        "embedding_dim": config.model.embedding_dim,
        "config": config.to_dict(),
        "classes": ["a", "b"],
        "splits_fingerprint": "f1",
    }


@pytest.mark.parametrize(
    ("change", "label"),
    [
        (lambda c, k: setattr(c.model, "backbone", "test_resnet"), "backbone"),
        (lambda c, k: setattr(c.model, "embedding_dim", 64), "embedding_dim"),
        (lambda c, k: setattr(c.training, "scheduler_type", "reduce_on_plateau"), "scheduler"),
        (lambda c, k: k.update(classes=["a", "b", "c"]), "class list"),
        (lambda c, k: k.update(fingerprint="f2"), "splits"),
    ],
)
def test_resume_is_refused_when_the_run_changed(tmp_path, change, label):
    config = tiny_config()
    saved = saved_run(config)
    current = {"classes": ["a", "b"], "fingerprint": "f1"}
    ckpt.check_resume_compatible(saved, config=config, path=tmp_path, **current)
    change(config, current)
    with pytest.raises(UserError, match=rf"{label}.*--fresh"):
        ckpt.check_resume_compatible(saved, config=config, path=tmp_path, **current)


def test_metrics_csv_is_rewritten_from_history(tmp_path):
    path = tmp_path / ckpt.METRICS
    rows = [{"epoch": 1, "val_recall@1": 0.5}, {"epoch": 2, "val_recall@1": 0.75}]
    ckpt.write_metrics_csv(path, rows)
    assert path.read_text() == "epoch,val_recall@1\n1,0.5\n2,0.75\n"
    ckpt.write_metrics_csv(path, rows[:1])
    assert path.read_text() == "epoch,val_recall@1\n1,0.5\n"
    ckpt.write_metrics_csv(path, [])
    assert not path.exists()

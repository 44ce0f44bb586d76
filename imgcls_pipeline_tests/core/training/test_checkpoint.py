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


def test_resume_names_every_changed_setting_and_the_way_out(tmp_path):
    config = tiny_config()
    saved = saved_run(config)
    config.training.learning_rate = 0.005
    config.seed = 7
    with pytest.raises(UserError) as refused:
        ckpt.check_resume_compatible(
            saved, config=config, path=tmp_path, classes=["a", "b"], fingerprint="f1"
        )
    message = str(refused.value)
    assert "learning_rate differs (0.001 -> 0.005)" in message
    assert "seed differs (42 -> 7)" in message
    assert "pass the same settings" in message and "--fresh" in message


def test_resume_accepts_changes_that_only_say_how_far_or_where_it_runs(tmp_path):
    config = tiny_config()
    saved = saved_run(config)
    config.training.total_epochs += 5
    config.training.num_workers = 3
    config.training.use_bf16 = True
    config.training.early_stopping_patience = 1
    config.evaluation.top_k = 3
    ckpt.check_resume_compatible(
        saved, config=config, path=tmp_path, classes=["a", "b"], fingerprint="f1"
    )


def test_a_setting_an_older_checkpoint_lacks_counts_as_its_default(tmp_path):
    config = tiny_config()
    saved = saved_run(config)
    del saved["config"]["model"]["pooling"]
    saved["config"]["training"]["a_setting_since_removed"] = 1
    ckpt.check_resume_compatible(
        saved, config=config, path=tmp_path, classes=["a", "b"], fingerprint="f1"
    )
    config.model.pooling = "gem"
    with pytest.raises(UserError, match=r"pooling differs \('avg' -> 'gem'\)"):
        ckpt.check_resume_compatible(
            saved, config=config, path=tmp_path, classes=["a", "b"], fingerprint="f1"
        )


def checkpoint_folder(tmp_path, *, epoch, best_epoch):
    latest = {"format": ckpt.FORMAT, "epoch": epoch, "best_epoch": best_epoch, "optimizer": {}}
    ckpt.save_checkpoint(tmp_path / ckpt.LATEST, latest)
    ckpt.save_checkpoint(tmp_path / ckpt.BEST, ckpt.inference_only({**latest, "epoch": best_epoch}))
    (tmp_path / ckpt.BEST).write_bytes((tmp_path / ckpt.BEST).read_bytes()[:100])  # truncated
    return tmp_path


def test_a_truncated_best_model_is_refused_with_the_fix(tmp_path):
    folder = checkpoint_folder(tmp_path, epoch=9, best_epoch=4)
    with pytest.raises(UserError, match=r"best_model\.pt is missing or unreadable.*--fresh"):
        ckpt.check_best_checkpoint(folder)


def test_a_truncated_best_model_of_the_latest_epoch_is_rebuilt(tmp_path):
    folder = checkpoint_folder(tmp_path, epoch=4, best_epoch=4)
    assert "rebuilt" in ckpt.check_best_checkpoint(folder)
    best = ckpt.read_checkpoint(folder / ckpt.BEST)
    assert best["epoch"] == 4 and "optimizer" not in best
    assert ckpt.check_best_checkpoint(folder) is None


def test_a_checkpoint_from_before_batchnorm_statistics_resumes_only_as_it_trained(tmp_path):
    # Those runs updated the statistics after the warm-up; "auto" now freezes pretrained ones.
    config = tiny_config()
    config.model.pretrained_path = "weights.pth"  # pretrained weights: "auto" means frozen
    saved = saved_run(config)
    del saved["config"]["training"]["batchnorm_statistics"]
    with pytest.raises(
        UserError, match=r"batchnorm_statistics differs \('frozen_in_warmup' -> 'frozen'\)"
    ):
        ckpt.check_resume_compatible(
            saved, config=config, path=tmp_path, classes=["a", "b"], fingerprint="f1"
        )
    config.training.batchnorm_statistics = "frozen_in_warmup"
    ckpt.check_resume_compatible(
        saved, config=config, path=tmp_path, classes=["a", "b"], fingerprint="f1"
    )


def test_a_run_from_random_weights_resumes_with_auto_as_before(tmp_path):
    config = tiny_config()  # pretrained=False: "auto" keeps the warm-up-only freeze
    saved = saved_run(config)
    del saved["config"]["training"]["batchnorm_statistics"]
    assert config.training.batchnorm_statistics == "auto"
    ckpt.check_resume_compatible(
        saved, config=config, path=tmp_path, classes=["a", "b"], fingerprint="f1"
    )

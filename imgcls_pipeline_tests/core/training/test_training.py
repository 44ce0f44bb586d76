import contextlib
import copy
import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.hardware import DeviceProps, amp_settings, resolve_hardware
from imgcls_pipeline.core.search.evaluation import evaluate_split
from imgcls_pipeline.core.search.index import build_index
from imgcls_pipeline.core.search.inference import embed_frame, load_model
from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline.core.training import compiling
from imgcls_pipeline.core.training.arcface import ArcFace
from imgcls_pipeline.core.training.loop import (
    ArcFaceNet,
    Trainables,
    _configure_backends,
    _select_device,
    apply_phase,
    arcface_scale,
    checkpoint_payload,
    describe_batchnorm_statistics,
    exact_recall_at_k,
    make_trainables,
    record_epoch,
    restore,
    train,
    train_epoch,
)
from imgcls_pipeline.core.training.model import build_embedding_model, load_embedding_model
from imgcls_pipeline.core.training.pooling import GeM
from imgcls_pipeline.core.training.rng import seed_everything
from imgcls_pipeline_tests.core.training.tiny_training import (
    cpu_hardware,
    largest_weight_difference,
    make_tiny_splits,
    tiny_config,
)

CPU = torch.device("cpu")
UNTIMED = ("seconds", "images_per_second")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_splits(tmp_path_factory.mktemp("tiny"))


def run(tiny, checkpoint_dir, config, **kwargs):
    data_dir, splits_dir = tiny
    return train(
        config,
        data_dir=data_dir,
        splits_dir=splits_dir,
        checkpoint_dir=checkpoint_dir,
        hardware=kwargs.pop("hardware", cpu_hardware()),
        log=lambda _: None,
        **kwargs,
    )


def untimed(rows):
    return [{k: v for k, v in row.items() if k not in UNTIMED} for row in rows]


def test_gpu_backend_switches_follow_the_settings():
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    )
    try:
        _configure_backends(resolve_hardware(DeviceProps("NVIDIA A100-SXM4-80GB", 79.2, 8, 0), 32))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark
        _configure_backends(resolve_hardware(DeviceProps("Tesla T4", 14.6, 7, 5), 32))
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.benchmark
    finally:
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark,
        ) = saved


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")
def test_cuda_settings_without_a_gpu_are_refused():
    settings = resolve_hardware(DeviceProps("Tesla T4", 14.6, 7, 5), 4)
    with pytest.raises(UserError, match="no GPU"):
        _select_device(settings, info=None)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_keep_fp32_weights(precision):
    # The GPU paths' autocast and GradScaler logic, run through CPU autocast.
    config = tiny_config()
    net = ArcFaceNet(build_embedding_model(config.model), ArcFace(32, 3)).train()
    amp_dtype, use_scaler = amp_settings(precision)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=use_scaler)
    batch = (torch.randn(6, 3, 64, 64), torch.tensor([0, 0, 1, 1, 2, 2]))
    stats = train_epoch(
        net, [batch] * 3, optimizer, scaler, device=CPU, accum_steps=1, amp_dtype=amp_dtype
    )
    assert np.isfinite(stats.loss)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert net(*batch).dtype == torch.float32


def test_bad_split_tables_are_user_errors(tiny, tmp_path):
    data_dir, splits_dir = tiny
    broken = tmp_path / "splits"
    broken.mkdir()
    (broken / "train.csv").write_text((splits_dir / "train.csv").read_text())
    (broken / "val.csv").write_text("image_path,class_name\n")
    with pytest.raises(UserError, match=r"lacks the column\(s\) object_id"):
        run((data_dir, broken), tmp_path / "a", tiny_config())
    (broken / "val.csv").write_text((splits_dir / "val.csv").read_text().splitlines()[0] + "\n")
    with pytest.raises(UserError, match="must both have rows"):
        run((data_dir, broken), tmp_path / "b", tiny_config())


def test_warmup_phase_freezes_the_backbone_and_its_batchnorm():
    config = tiny_config()
    model = build_embedding_model(config.model)
    arcface = ArcFace(32, 3, m=0.0)
    model.train()
    apply_phase(model, arcface, "warmup", config.model, config.training.batchnorm_statistics)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training
    assert all(p.requires_grad for p in model.head.parameters())
    assert arcface.margin == config.model.arcface_m_warmup
    model.train()
    apply_phase(model, arcface, "finetune", config.model, config.training.batchnorm_statistics)
    assert all(p.requires_grad for p in model.parameters()) and model.backbone.training
    assert arcface.margin == config.model.arcface_m_finetune


@pytest.mark.parametrize(
    ("statistics", "updated_in_warmup", "updated_in_finetune"),
    [
        ("frozen_in_warmup", False, True),
        ("always_update", True, True),
        ("frozen", False, False),
    ],
)
def test_batchnorm_statistics_setting_decides_which_phases_update_them(
    statistics, updated_in_warmup, updated_in_finetune
):
    config = tiny_config(batchnorm_statistics=statistics)
    model = build_embedding_model(config.model)
    arcface = ArcFace(32, 3, m=0.0)
    norms = [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms

    def updates(phase: str) -> bool:
        model.train()
        apply_phase(model, arcface, phase, config.model, config.training.batchnorm_statistics)
        before = [n.running_mean.clone() for n in norms]
        model(torch.randn(4, 3, 64, 64) * 3 + 1)
        return not all(torch.equal(b, n.running_mean) for b, n in zip(before, norms, strict=True))

    assert updates("warmup") == updated_in_warmup
    assert updates("finetune") == updated_in_finetune
    # The backbone's weights still follow the phase, whatever happens to the statistics.
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert model.head.training


def test_the_run_says_which_batchnorm_statistics_it_updates(tiny, tmp_path):
    lines: list[str] = []
    data_dir, splits_dir = tiny
    train(
        tiny_config(total_epochs=1),  # random weights
        data_dir=data_dir,
        splits_dir=splits_dir,
        checkpoint_dir=tmp_path,
        hardware=cpu_hardware(),
        log=lines.append,
    )
    expected = "Backbone BatchNorm statistics: frozen_in_warmup (batchnorm_statistics auto: random "
    assert f"{expected}weights)." in lines
    assert describe_batchnorm_statistics("frozen", "frozen") == (
        "Backbone BatchNorm statistics: frozen."
    )


def test_gradient_accumulation_equals_one_big_batch():
    config = tiny_config()
    seed_everything(0)
    net = ArcFaceNet(build_embedding_model(config.model), ArcFace(32, 3, s=16.0, m=0.5))
    images, labels = torch.randn(8, 3, 64, 64), torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])

    def step(batches, accum_steps):
        clone = copy.deepcopy(net).train()
        # Backbone BatchNorm in eval mode: each image's gradient is independent of its batch.
        apply_phase(
            clone.model, clone.arcface, "warmup", config.model, config.training.batchnorm_statistics
        )
        # Plain SGD: the update is proportional to the gradient (Adam's first step is not).
        optimizer = torch.optim.SGD(clone.parameters(), lr=0.5)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        train_epoch(
            clone, batches, optimizer, scaler, device=CPU, accum_steps=accum_steps, amp_dtype=None
        )
        return clone.state_dict()

    one_batch = step([(images, labels)], accum_steps=1)
    accumulated = step([(images[:4], labels[:4]), (images[4:], labels[4:])], accum_steps=2)
    two_steps = step([(images[:4], labels[:4]), (images[4:], labels[4:])], accum_steps=1)
    for name, value in one_batch.items():
        torch.testing.assert_close(accumulated[name], value, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(two_steps["arcface.weight"], one_batch["arcface.weight"])


def test_warmup_then_finetune(tiny, tmp_path):
    config = tiny_config(warmup_epochs=1, total_epochs=1)
    rows = []
    run(tiny, tmp_path, config, on_epoch_end=rows.append)
    seed_everything(config.seed)
    initial = build_embedding_model(config.model).state_dict()
    after_warmup = ckpt.read_checkpoint(tmp_path / ckpt.LATEST)["model"]
    for name, value in after_warmup.items():
        if name.startswith("backbone."):  # weights and BatchNorm running statistics
            torch.testing.assert_close(value, initial[name], atol=0, rtol=0)
    assert not torch.equal(after_warmup["head.weight"], initial["head.weight"])

    config.training.total_epochs = 2
    result = run(tiny, tmp_path, config, on_epoch_end=rows.append)
    after_finetune = ckpt.read_checkpoint(tmp_path / ckpt.LATEST)
    assert not torch.equal(
        after_finetune["model"]["backbone.conv_stem.weight"],
        initial["backbone.conv_stem.weight"],
    )
    assert [(r["epoch"], r["phase"], r["margin"]) for r in rows] == [
        (1, "warmup", config.model.arcface_m_warmup),
        (2, "finetune", config.model.arcface_m_finetune),
    ]
    assert after_finetune["phase"] == "finetune" and result.last_epoch == 2


def test_resume_equals_an_uninterrupted_run(tiny, tmp_path):
    straight = run(tiny, tmp_path / "straight", tiny_config(total_epochs=4))
    run(tiny, tmp_path / "resumed", tiny_config(total_epochs=2))
    metrics = tmp_path / "resumed" / ckpt.METRICS
    # a row written for an epoch the checkpoint does not hold (killed in between)
    metrics.write_text(metrics.read_text() + "3,finetune,0.5,0.001,9,0,0,0,0\n")
    resumed = run(tiny, tmp_path / "resumed", tiny_config(total_epochs=4))

    a = ckpt.read_checkpoint(tmp_path / "straight" / ckpt.LATEST)
    b = ckpt.read_checkpoint(tmp_path / "resumed" / ckpt.LATEST)
    for part in ("model", "arcface"):
        for name, value in a[part].items():
            torch.testing.assert_close(b[part][name], value)
    torch.testing.assert_close(b["optimizer"]["state"], a["optimizer"]["state"])
    assert untimed(b["history"]) == untimed(a["history"])
    assert resumed.final_metrics["train_loss"] == pytest.approx(
        straight.final_metrics["train_loss"]
    )
    epochs = [line.split(",")[0] for line in metrics.read_text().splitlines()[1:]]
    assert epochs == ["1", "2", "3", "4"]


def test_checkpoint_contents(tiny, tmp_path):
    hardware = dataclasses.replace(cpu_hardware(), reason="test")
    result = run(tiny, tmp_path, tiny_config(total_epochs=1), hardware=hardware)
    latest = ckpt.read_checkpoint(result.latest_checkpoint)  # torch.load(weights_only=True)
    best = ckpt.read_checkpoint(result.best_checkpoint)
    expected = {
        "format", "epoch", "phase", "margin", "model", "arcface", "optimizer", "scheduler",
        "scaler", "best_val_recall@1", "best_epoch", "epochs_without_improvement",
        "stopped_early", "rng", "config", "classes", "splits_fingerprint", "backbone",
        "embedding_dim", "mean", "std", "image_size", "hardware", "history",
    }  # fmt: skip
    assert set(latest) == expected
    assert set(best) == expected - set(ckpt.RESUME_STATE_KEYS)
    assert latest["classes"] == ["class_0", "class_1", "class_2"]
    assert latest["splits_fingerprint"] == ckpt.splits_fingerprint(tiny[1])
    assert all(t.dtype == torch.float32 for t in latest["model"].values() if t.is_floating_point())
    assert latest["config"] == tiny_config(total_epochs=1).to_dict()
    assert set(latest["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert latest["hardware"] == result.hardware == hardware.to_dict()


def test_resume_against_another_run_is_refused(tiny, tmp_path):
    run(tiny, tmp_path, tiny_config(total_epochs=1))
    other = tiny_config(total_epochs=2)
    other.model.backbone = "test_resnet"
    with pytest.raises(UserError, match=r"backbone.*--fresh"):
        run(tiny, tmp_path, other)
    other.training.fresh = True
    assert run(tiny, tmp_path, other).last_epoch == 2


def test_stop_request_keeps_the_last_completed_epoch(tiny, tmp_path):
    # Per epoch: 2 training steps and 1 validation batch, each polled once, then the epoch's end.
    polls = iter(range(100))
    result = run(tiny, tmp_path, tiny_config(total_epochs=5), should_stop=lambda: next(polls) >= 4)
    assert result.interrupted and result.last_epoch == 1
    assert ckpt.read_checkpoint(tmp_path / ckpt.LATEST)["epoch"] == 1
    resumed = run(tiny, tmp_path, tiny_config(total_epochs=2))
    assert not resumed.interrupted and resumed.last_epoch == 2


def test_stop_during_validation_saves_nothing_half_done(tiny, tmp_path):
    polls = iter(range(100))
    result = run(tiny, tmp_path, tiny_config(total_epochs=5), should_stop=lambda: next(polls) >= 2)
    assert result.interrupted and result.last_epoch == 0 and result.latest_checkpoint is None


def test_patience_counts_finetuning_epochs_without_a_new_best_only():
    state = ckpt.RunState()
    calls = [(0.5, "warmup"), (0.4, "warmup"), (0.4, "finetune"), (0.6, "finetune")]
    assert [record_epoch(state, r, phase, patience=2) for r, phase in calls] == [
        True, False, False, True,
    ]  # fmt: skip
    assert (state.epoch, state.best_epoch, state.best_recall) == (4, 4, 0.6)
    assert (state.epochs_without_improvement, state.stopped_early) == (0, False)
    record_epoch(state, 0.6, "finetune", patience=2)  # equal is no improvement
    assert (state.epochs_without_improvement, state.stopped_early) == (1, False)
    record_epoch(state, 0.1, "finetune", patience=2)
    assert (state.epochs_without_improvement, state.stopped_early) == (2, True)
    record_epoch(state, 0.1, "finetune", patience=0)  # 0 turns early stopping off
    assert state.stopped_early is False


def test_early_stopping_waits_for_finetuning_and_is_final(tiny, tmp_path):
    config = tiny_config(warmup_epochs=1, total_epochs=8, early_stopping_patience=1)
    result = run(tiny, tmp_path, config)
    recalls = [
        row["val_recall@1"] for row in ckpt.read_checkpoint(result.latest_checkpoint)["history"]
    ]
    assert result.stopped_early and len(recalls) < 8 and len(recalls) >= 2
    assert recalls[-1] <= max(recalls[:-1])  # no improvement in the last (patience=1) epoch
    again = run(tiny, tmp_path, config)
    assert again.last_epoch == result.last_epoch and again.stopped_early


def test_reduce_on_plateau_halves_the_rate_after_a_flat_epoch(tiny, tmp_path):
    config = tiny_config(
        warmup_epochs=0,
        total_epochs=4,
        scheduler_type="reduce_on_plateau",
        plateau_patience=0,
        plateau_factor=0.5,
        early_stopping_patience=0,
    )
    run(tiny, tmp_path, config)
    rows = ckpt.read_checkpoint(tmp_path / ckpt.LATEST)["history"]
    best = -1.0
    for row, following in itertools.pairwise(rows):
        improved = row["val_recall@1"] > best
        best = max(best, row["val_recall@1"])
        factor = 1.0 if improved else 0.5
        assert following["lr"] == pytest.approx(row["lr"] * factor)


def test_val_recall_at_k_matches_brute_force():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(40, 6)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = rng.normal(size=(15, 6)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    g_labels, q_labels = rng.integers(0, 4, 40), rng.integers(0, 5, 15)  # class 4: no match
    got = exact_recall_at_k(queries, q_labels, gallery, g_labels, [1, 3, 5])
    distances = ((queries[:, None, :] - gallery[None, :, :]) ** 2).sum(-1)
    order = np.argsort(distances, axis=1)
    for k in (1, 3, 5):
        hits = [(g_labels[order[i, :k]] == q_labels[i]).any() for i in range(15)]
        assert got[k] == pytest.approx(np.mean(hits))
    assert got[1] < got[3] < 1.0  # the data makes every K a different answer


def trainables(config, seed: int) -> Trainables:
    seed_everything(seed)
    net = ArcFaceNet(build_embedding_model(config.model), ArcFace(32, 3))
    return make_trainables(net, config.training, CPU, use_scaler=False)


def test_run_state_survives_a_checkpoint_round_trip(tmp_path):
    config = tiny_config(warmup_epochs=1)
    parts = trainables(config, seed=0)
    batch = (torch.randn(6, 3, 64, 64), torch.tensor([0, 0, 1, 1, 2, 2]))
    train_epoch(
        parts.net.train(), [batch] * 2, parts.optimizer, parts.scaler, device=CPU,
        accum_steps=1, amp_dtype=None,
    )  # fmt: skip
    parts.scheduler.step()
    state = ckpt.RunState(2, 0.75, 1, 1, False, [{"epoch": 1, "train_loss": 1.5}, {"epoch": 2}])
    payload = checkpoint_payload(
        config, state, parts, classes=["a", "b", "c"], fingerprint="f", hardware=cpu_hardware()
    )
    assert (payload["epoch"], payload["phase"]) == (2, "finetune")  # epoch 2 is after warm-up
    ckpt.save_checkpoint(tmp_path / ckpt.LATEST, payload)

    fresh = trainables(config, seed=1)
    restored = restore(ckpt.read_checkpoint(tmp_path / ckpt.LATEST), fresh)
    assert restored == state
    for name, value in parts.net.state_dict().items():
        torch.testing.assert_close(fresh.net.state_dict()[name], value, atol=0, rtol=0)
    torch.testing.assert_close(
        fresh.optimizer.state_dict()["state"], parts.optimizer.state_dict()["state"]
    )
    assert fresh.scheduler.state_dict() == parts.scheduler.state_dict()


@pytest.mark.parametrize("ema_decay", [None, 0.5])
def test_best_val_recall_is_what_evaluation_reports_for_best_model(tmp_path, ema_decay):
    # 7 classes in 5 colours: classes 5 and 6 look like 0 and 1, so Recall@1 is not simply 1.
    data_dir, splits_dir = make_tiny_splits(tmp_path / "data", n_classes=7)
    config = tiny_config(total_epochs=2, ema_decay=ema_decay)
    result = run((data_dir, splits_dir), tmp_path / "run", config)
    loaded = load_model(result.best_checkpoint, CPU)
    train_frame = pd.read_csv(splits_dir / "train.csv")
    val_frame = pd.read_csv(splits_dir / "val.csv")
    gallery = embed_frame(loaded, train_frame, data_dir, batch_size=5)
    queries = embed_frame(loaded, val_frame, data_dir, batch_size=5)
    evaluation = evaluate_split(val_frame, queries, build_index(gallery), train_frame)
    assert evaluation.metrics["recall@1"] == result.best_val_recall_at_1
    assert 0 < result.best_val_recall_at_1 < 1


def test_sub_center_adacos_run_trains_k_centres_per_class_at_the_adacos_scale(tiny, tmp_path):
    config = tiny_config(total_epochs=1)
    config.model.arcface_subcenters = 3
    config.model.arcface_scale_mode = "adacos"
    assert arcface_scale(config.model, 3) == pytest.approx(math.sqrt(2) * math.log(2))
    assert arcface_scale(tiny_config().model, 3) == 16.0  # fixed: arcface_s as given
    run(tiny, tmp_path, config)
    saved = ckpt.read_checkpoint(tmp_path / ckpt.LATEST)
    assert saved["arcface"]["weight"].shape == (3 * 3, config.model.embedding_dim)
    config.model.arcface_subcenters = 1
    config.training.total_epochs = 2
    with pytest.raises(UserError, match=r"arcface_subcenters differs.*3 -> 1.*--fresh"):
        run(tiny, tmp_path, config)


def test_head_lr_multiplier_gives_the_new_parts_their_own_rate():
    config = tiny_config(head_lr_multiplier=10.0)
    net = ArcFaceNet(build_embedding_model(config.model), ArcFace(32, 3))
    optimizer = make_trainables(net, config.training, CPU, use_scaler=False).optimizer
    backbone, new_parts = optimizer.param_groups
    assert [backbone["lr"], new_parts["lr"]] == pytest.approx([1e-3, 1e-2])
    assert {id(p) for p in backbone["params"]} == {id(p) for p in net.model.backbone.parameters()}
    new_ids = {id(p) for p in new_parts["params"]}
    assert new_ids == {id(net.model.head.weight), id(net.model.head.bias), id(net.arcface.weight)}
    default = make_trainables(net, tiny_config().training, CPU, use_scaler=False).optimizer
    assert len(default.param_groups) == 1 and default.param_groups[0]["lr"] == 1e-3


def test_schedules_scale_both_groups_and_the_logged_lr_is_the_backbones(tiny, tmp_path):
    config = tiny_config(total_epochs=3, head_lr_multiplier=10.0, cosine_t0=4)
    run(tiny, tmp_path, config)
    saved = ckpt.read_checkpoint(tmp_path / ckpt.LATEST)
    lrs = [row["lr"] for row in saved["history"]]
    # cosine over T_0=4 epochs, stepped once per epoch, from the backbone's 1e-3
    expected = [1e-3 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert lrs == pytest.approx(expected[:3])
    backbone, new_parts = saved["optimizer"]["param_groups"]
    assert backbone["lr"] == pytest.approx(expected[3])
    assert new_parts["lr"] == pytest.approx(10 * expected[3])


def test_gem_pooling_trains_and_its_best_model_is_rebuilt_with_gem(tiny, tmp_path):
    config = tiny_config(total_epochs=1)
    config.model.pooling = "gem"
    result = run(tiny, tmp_path, config)
    model, checkpoint = load_embedding_model(result.best_checkpoint, CPU)
    assert isinstance(model.pool, GeM) and checkpoint["config"]["model"]["pooling"] == "gem"
    config.model.pooling, config.training.total_epochs = "avg", 2
    with pytest.raises(UserError, match=r"pooling differs.*'gem' -> 'avg'.*--fresh"):
        run(tiny, tmp_path, config)


def test_ema_follows_each_optimiser_step_with_the_decay():
    decay = 0.75
    config = tiny_config(warmup_epochs=0, ema_decay=decay)
    parts = trainables(config, seed=0)
    model = parts.net.model
    snapshots = [{k: v.double().clone() for k, v in model.state_dict().items()}]

    def update_and_record() -> None:
        parts.ema.update(model)
        snapshots.append({k: v.double().clone() for k, v in model.state_dict().items()})

    batch = (torch.randn(6, 3, 64, 64), torch.tensor([0, 0, 1, 1, 2, 2]))
    train_epoch(
        parts.net.train(), [batch] * 3, parts.optimizer, parts.scaler, device=CPU,
        accum_steps=1, amp_dtype=None, after_step=update_and_record,
    )  # fmt: skip
    assert len(snapshots) == 4  # the initial weights and one per optimiser step
    ema = parts.ema.module.state_dict()
    for name, value in ema.items():
        if not value.is_floating_point():
            continue
        # e_0 = w_0, e_t = d·e_(t-1) + (1 − d)·w_t
        expected = snapshots[0][name]
        for weights in snapshots[1:]:
            expected = decay * expected + (1 - decay) * weights[name]
        torch.testing.assert_close(value.double(), expected, atol=1e-6, rtol=1e-5)
    assert not torch.equal(ema["head.weight"], model.state_dict()["head.weight"])


def test_ema_run_saves_the_averaged_weights_and_resumes_exactly(tiny, tmp_path):
    straight = run(tiny, tmp_path / "straight", tiny_config(total_epochs=4, ema_decay=0.6))
    run(tiny, tmp_path / "resumed", tiny_config(total_epochs=2, ema_decay=0.6))
    resumed = run(tiny, tmp_path / "resumed", tiny_config(total_epochs=4, ema_decay=0.6))

    a = ckpt.read_checkpoint(tmp_path / "straight" / ckpt.LATEST)
    b = ckpt.read_checkpoint(tmp_path / "resumed" / ckpt.LATEST)
    for part in ("model", "trained_model", "arcface"):
        for name, value in a[part].items():
            torch.testing.assert_close(b[part][name], value)
    torch.testing.assert_close(b["optimizer"]["state"], a["optimizer"]["state"])
    assert untimed(b["history"]) == untimed(a["history"])
    assert untimed([resumed.final_metrics]) == untimed([straight.final_metrics])
    # "model" is the average, not the optimiser's weights; best_model.pt holds the average only
    assert not torch.equal(a["model"]["head.weight"], a["trained_model"]["head.weight"])
    best = ckpt.read_checkpoint(tmp_path / "straight" / ckpt.BEST)
    assert "trained_model" not in best and best["epoch"] == straight.best_epoch


@pytest.mark.slow
def test_a_compiled_run_trains_the_weights_an_eager_run_trains(tiny, tmp_path, monkeypatch):
    # compile=on on the CPU, through dynamo's "eager" backend (inductor's CPU compile takes
    # minutes here): the warm-up trials of both phases must leave the run exactly as without.
    monkeypatch.setattr(compiling, "BACKEND", "eager")
    torch._dynamo.reset()
    lines: list[str] = []
    data_dir, splits_dir = tiny
    try:
        train(
            tiny_config(compile="on"),
            data_dir=data_dir,
            splits_dir=splits_dir,
            checkpoint_dir=tmp_path / "compiled",
            hardware=cpu_hardware(),
            log=lines.append,
        )
    finally:
        torch._dynamo.reset()
    run(tiny, tmp_path / "eager", tiny_config(compile="off"))
    assert lines.count("Training step: compile=on.") == 2  # warm-up, then fine-tuning
    difference = largest_weight_difference(
        tmp_path / "compiled" / ckpt.LATEST, tmp_path / "eager" / ckpt.LATEST
    )
    assert difference < 1e-5, difference


class _Logits(torch.nn.Module):
    """net(images, labels) -> logits, as train_epoch calls it; a linear map is enough here."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(12, 3)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.fc(images.flatten(1))


def test_accumulation_skips_the_all_reduce_and_the_stop_poll_inside_a_group():
    """Under DDP, no_sync on every micro-batch but a group's last; the stop request is read once
    per optimizer step, never per micro-batch."""
    entered, polls, steps = [], [], []

    @contextlib.contextmanager
    def no_sync():
        entered.append(len(polls))
        yield

    def should_stop() -> bool:
        polls.append(len(steps))
        return False

    net = _Logits()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    batches = [(torch.randn(2, 3, 2, 2), torch.tensor([0, 1]))] * 6
    stats = train_epoch(
        net,
        batches,
        optimizer,
        torch.amp.GradScaler("cpu", enabled=False),
        device=CPU,
        accum_steps=3,
        amp_dtype=None,
        no_sync=no_sync,
        should_stop=should_stop,
        after_step=lambda: steps.append(1),
    )
    assert not stats.interrupted and stats.images == 12 and len(steps) == 2
    assert polls == [0, 1]  # before each group's first micro-batch
    assert entered == [1, 1, 2, 2]  # the first two micro-batches of each group of 3

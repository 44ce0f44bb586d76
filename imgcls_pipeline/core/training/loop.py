"""The training loop: data, forward, loss, backward, step, validate, checkpoint, in that order.

Precision follows the resolved HardwareSettings (see ``train_step.amp_settings``); the phases,
sampler, checkpoint format and validation each have their own module in core/.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from imgcls_pipeline.core.data.dataset import class_list
from imgcls_pipeline.core.data.split_files import read_split
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.hardware import HardwareSettings
from imgcls_pipeline.core.settings import PipelineConfig
from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline.core.training import distributed
from imgcls_pipeline.core.training.arcface import ArcFace
from imgcls_pipeline.core.training.model import build_embedding_model
from imgcls_pipeline.core.training.optim import (
    current_lr,
    make_optimizer,
    make_scheduler,
    step_scheduler,
)
from imgcls_pipeline.core.training.phases import apply_phase, margin_for_phase, phase_for_epoch
from imgcls_pipeline.core.training.rng import restore_rng_state, seed_everything
from imgcls_pipeline.core.training.run_state import (
    RunState,
    Trainables,
    checkpoint_payload,
    restore,
)
from imgcls_pipeline.core.training.train_step import ArcFaceNet, amp_settings, train_epoch
from imgcls_pipeline.core.training.training_data import TrainingData, make_training_data
from imgcls_pipeline.core.training.validation import Interrupted, embed, recall_at_k


@dataclass
class TrainResult:
    best_epoch: int | None
    last_epoch: int
    best_val_recall_at_1: float | None
    final_metrics: dict[str, Any]  # the last metrics.csv row
    stopped_early: bool
    interrupted: bool
    best_checkpoint: str | None
    latest_checkpoint: str | None
    hardware: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train(
    config: PipelineConfig,
    *,
    data_dir: str | Path,
    splits_dir: str | Path,
    checkpoint_dir: str | Path,
    hardware: HardwareSettings,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = lambda: False,
    progress: bool = False,
) -> TrainResult:
    """Train per ``config``, resuming from latest_model.pt unless ``config.training.fresh``.

    ``hardware`` (from ``resolve_hardware``, which already applied use_bf16 / num_workers /
    gradient_accumulation_steps from the config or the GPU resource) decides the device,
    precision, loader workers and accumulation; the config's copies of those are not read here.

    Under torchrun every rank calls this; rank 0 alone logs, calls ``on_epoch_end`` (with the
    metrics row) and writes files. ``should_stop`` is polled before every step: the loop then
    returns with ``interrupted=True``; latest_model.pt keeps the last completed epoch and the
    partial epoch runs again on resume.
    """
    info = distributed.current()
    log = log if info.is_main else _silent
    device = _select_device(hardware, info)
    _configure_backends(hardware)
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    latest_path, best_path = checkpoint_dir / ckpt.LATEST, checkpoint_dir / ckpt.BEST

    train_frame, val_frame = read_split(splits_dir, "train"), read_split(splits_dir, "val")
    if train_frame.empty or val_frame.empty:
        raise UserError(
            f"train.csv and val.csv in {splits_dir} must both have rows (val Recall@1 picks the "
            f"best model and stops early); recreate the splits with val_ratio above 0."
        )
    classes = class_list(train_frame)
    fingerprint = ckpt.splits_fingerprint(splits_dir)

    seed_everything(config.seed)  # the same on every rank: identical initial weights
    model = build_embedding_model(config.model)
    arcface = ArcFace(
        config.model.embedding_dim,
        len(classes),
        config.model.arcface_s,
        config.model.arcface_m_warmup,
    )
    memory_format = torch.channels_last if hardware.channels_last else torch.preserve_format
    net = ArcFaceNet(model, arcface).to(device, memory_format=memory_format)
    optimizer = make_optimizer(net, config.training)
    amp_dtype, use_scaler = amp_settings(hardware.precision)
    parts = Trainables(
        net,
        optimizer,
        make_scheduler(optimizer, config.training),
        torch.amp.GradScaler(device.type, enabled=use_scaler),
    )

    state = RunState()
    if info.is_main:
        ckpt.remove_stale_temp_files(checkpoint_dir)
    if latest_path.exists() and not config.training.fresh:
        saved = ckpt.read_checkpoint(latest_path)
        ckpt.check_resume_compatible(
            saved, config=config, classes=classes, fingerprint=fingerprint, path=latest_path
        )
        state = restore(saved, parts)
        # Rank 0's random state is in the checkpoint; the other ranks get fresh, distinct seeds.
        if info.is_main:
            restore_rng_state(saved["rng"])
        else:
            seed_everything(config.seed + 1000 * state.epoch + info.rank)
        log(f"Resuming from {latest_path} after epoch {state.epoch}.")
    else:
        seed_everything(config.seed + info.rank)  # distinct augmentations per rank
    if info.is_main:
        # Rewritten from the checkpoint: rows of epochs that ran after it are dropped.
        ckpt.write_metrics_csv(checkpoint_dir / ckpt.METRICS, state.history)

    data = make_training_data(
        config, model, data_dir, train_frame, val_frame, classes, hardware, info
    )
    ks = sorted({1, *config.evaluation.recall_k_values})
    _log_setup(log, data, len(val_frame), len(classes), hardware, info)
    if state.stopped_early:
        log(f"Nothing to train: {latest_path} stopped early at epoch {state.epoch}; use --fresh.")
    elif state.epoch >= config.training.total_epochs:
        log(
            f"Nothing to train: {latest_path} is at epoch {state.epoch} of "
            f"{config.training.total_epochs}; raise --total_epochs to continue or use --fresh."
        )

    ddp: DistributedDataParallel | None = None
    interrupted = False
    for epoch in range(state.epoch, config.training.total_epochs):
        if state.stopped_early:
            break
        phase = phase_for_epoch(epoch, config.training.warmup_epochs)
        net.train()
        apply_phase(model, arcface, phase, config.model)
        if info.enabled and (ddp is None or epoch == config.training.warmup_epochs):
            # DDP registers the parameters that require grad when it is built: build it after
            # freezing, and again when the backbone is unfrozen, or it would wait for gradients
            # that never come (warm-up) or never all-reduce the backbone's (fine-tuning).
            del ddp
            ddp = DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None
            )
        data.sampler.set_epoch(epoch)
        lr = current_lr(optimizer)
        started = time.perf_counter()

        stats = train_epoch(
            ddp or net,
            tqdm(
                data.train_loader,
                desc=f"epoch {epoch + 1}",
                disable=not (progress and info.is_main),
            ),
            optimizer,
            parts.scaler,
            device=device,
            accum_steps=hardware.accum_steps,
            amp_dtype=amp_dtype,
            channels_last=hardware.channels_last,
            no_sync=ddp.no_sync if ddp is not None else nullcontext,
            should_stop=should_stop,
        )
        if stats.interrupted:
            interrupted = True
            break
        try:
            shard = embed(
                model,
                data.eval_loader,
                device,
                amp_dtype=amp_dtype,
                channels_last=hardware.channels_last,
                should_stop=should_stop,
            )
        except Interrupted:
            interrupted = True
            break
        embeddings = distributed.gather_rows(shard.to(device), data.n_eval).cpu()
        n_gallery = len(data.train_set)
        recalls = recall_at_k(
            embeddings[n_gallery:],
            data.eval_labels[n_gallery:],
            embeddings[:n_gallery],
            data.eval_labels[:n_gallery],
            ks,
        )
        step_scheduler(parts.scheduler, recalls[1])

        state.epoch = epoch + 1
        improved = recalls[1] > state.best_recall
        if improved:
            state.best_recall, state.best_epoch = recalls[1], state.epoch
            state.epochs_without_improvement = 0
        elif phase == "finetune":
            state.epochs_without_improvement += 1
        # (Warm-up epochs without improvement do not count: patience is for fine-tuning.)
        # Early stopping waits for fine-tuning: a plateau with a frozen backbone says little.
        patience = config.training.early_stopping_patience
        state.stopped_early = (
            0 < patience <= state.epochs_without_improvement and phase == "finetune"
        )
        row = {
            "epoch": state.epoch,
            "phase": phase,
            "margin": margin_for_phase(phase, config.model),
            "lr": lr,
            "train_loss": stats.loss,
            **{f"val_recall@{k}": recalls[k] for k in ks},
            "seconds": round(time.perf_counter() - started, 3),
            "images_per_second": round(
                stats.images * info.world_size / max(stats.seconds, 1e-9), 2
            ),
        }
        state.history.append(row)

        if info.is_main:
            payload = checkpoint_payload(
                config, state, parts, classes=classes, fingerprint=fingerprint, hardware=hardware
            )
            if improved:  # best first: a kill between the two writes re-runs this epoch
                inference_only = {
                    k: v for k, v in payload.items() if k not in ckpt.RESUME_STATE_KEYS
                }
                ckpt.save_checkpoint(best_path, inference_only)
            ckpt.save_checkpoint(latest_path, payload)
            ckpt.write_metrics_csv(checkpoint_dir / ckpt.METRICS, state.history)
            if on_epoch_end is not None:
                on_epoch_end(dict(row))
        distributed.barrier()  # the other ranks wait until the checkpoint is complete
        log(_describe_epoch(row, config.training.total_epochs, improved))
        if state.stopped_early:
            log(f"Early stopping: no val Recall@1 improvement for {patience} epochs.")

    if interrupted:
        log(f"Stopped on request; {latest_path.name} holds epoch {state.epoch}, resume continues.")
    return TrainResult(
        best_epoch=state.best_epoch,
        last_epoch=state.epoch,
        best_val_recall_at_1=state.best_recall if state.best_epoch is not None else None,
        final_metrics=dict(state.history[-1]) if state.history else {},
        stopped_early=state.stopped_early,
        interrupted=interrupted,
        best_checkpoint=str(best_path) if best_path.exists() else None,
        latest_checkpoint=str(latest_path) if latest_path.exists() else None,
        hardware=hardware.to_dict(),
    )


def _select_device(hardware: HardwareSettings, info: distributed.DistInfo) -> torch.device:
    if hardware.device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(
            "The hardware settings ask for CUDA but PyTorch sees no GPU here; "
            "run on a GPU machine or let the hardware be detected again."
        )
    return torch.device("cuda", info.local_rank)


def _configure_backends(hardware: HardwareSettings) -> None:
    if hardware.device != "cuda":
        return
    # TF32 runs the fp32 matmuls/convolutions left outside autocast on tensor cores (Ampere+)
    # with a 10-bit mantissa: much faster, for an error far below SGD noise.
    torch.backends.cuda.matmul.allow_tf32 = hardware.tf32
    torch.backends.cudnn.allow_tf32 = hardware.tf32
    # The input size is fixed (image_size²), so cudnn's one-off autotuning per layer pays back.
    torch.backends.cudnn.benchmark = hardware.cudnn_benchmark


def _log_setup(
    log: Callable[[str], None],
    data: TrainingData,
    n_val: int,
    n_classes: int,
    hardware: HardwareSettings,
    info: distributed.DistInfo,
) -> None:
    batch = data.sampler.p * data.sampler.k
    per_rank = f" per rank ({info.world_size} ranks)" if info.enabled else ""
    log(
        f"{len(data.train_set)} train / {n_val} val images, {n_classes} classes; batch "
        f"{data.sampler.p}×{data.sampler.k}={batch}, accumulation {hardware.accum_steps} "
        f"(effective {batch * hardware.accum_steps * info.world_size}), "
        f"{len(data.sampler)} batches per epoch{per_rank}; {hardware.precision} on "
        f"{hardware.name} ({hardware.reason})."
    )


def _describe_epoch(row: dict[str, Any], total_epochs: int, improved: bool) -> str:
    recalls = " ".join(f"R@{k.split('@')[1]}={v:.4f}" for k, v in row.items() if "recall@" in k)
    return (
        f"epoch {row['epoch']}/{total_epochs} {row['phase']} m={row['margin']:g} "
        f"lr={row['lr']:.2e} loss={row['train_loss']:.4f} val {recalls} "
        f"({row['seconds']:.1f} s, {row['images_per_second']:.1f} img/s)"
        f"{' best' if improved else ''}"
    )


def _silent(_: str) -> None:
    pass

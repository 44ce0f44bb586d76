"""The training loop, top to bottom: data, phase, forward, loss, backward, step, validate,
schedule, early stop, checkpoint.

``train`` reads as one epoch after another; the helpers below it follow in the same order. The
mechanics live in small modules beside this one: the P×K sampler (``sampler``), the ArcFace head
(``arcface``), the embedding model (``model``), the checkpoint format (``checkpoint``), random
states (``rng``) and the few collectives (``distributed``). Embedding and Recall@K are the ones
inference and evaluation use (``search.embedding``, ``search.metrics``); the precision comes from
the specification's GPU table (``hardware``).

The two phases: warm-up (frozen backbone, small margin), then fine-tuning. Warm-up trains only
the new parts (embedding head, ArcFace class centres) on top of the pretrained features with
``arcface_m_warmup`` (0 = plain normalised softmax): random class centres and a large margin at
once would send large, noisy gradients into the pretrained backbone. After ``warmup_epochs``
everything trains with the full margin ``arcface_m_finetune``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from timm.utils.model_ema import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, LRScheduler, ReduceLROnPlateau
from torch.utils.data import DataLoader, Subset

from imgcls_pipeline.core.data.dataset import ImageDataset, class_list, make_loader
from imgcls_pipeline.core.data.image_cache import ImageCache, open_cache
from imgcls_pipeline.core.data.preflight import preflight
from imgcls_pipeline.core.data.skipped import SkippedPhotos
from imgcls_pipeline.core.data.split_files import read_splits
from imgcls_pipeline.core.data.transforms import eval_transform, train_transform
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.hardware import HardwareSettings, amp_settings, loader_settings
from imgcls_pipeline.core.progress import progress as progress_bar
from imgcls_pipeline.core.search.embedding import Interrupted, compute_embeddings
from imgcls_pipeline.core.search.index import build_index, search
from imgcls_pipeline.core.search.metrics import neighbour_codes, recall_at_k
from imgcls_pipeline.core.settings import (
    BatchNormStatistics,
    ModelConfig,
    PipelineConfig,
    TrainingConfig,
    effective_batchnorm_statistics,
)
from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline.core.training import compiling, distributed
from imgcls_pipeline.core.training.arcface import ArcFace, adacos_scale
from imgcls_pipeline.core.training.checkpoint import RunState
from imgcls_pipeline.core.training.model import EmbeddingModel, build_embedding_model
from imgcls_pipeline.core.training.rng import (
    capture_rng_state,
    restore_rng_state,
    seed_everything,
)
from imgcls_pipeline.core.training.sampler import PKBatchSampler

Phase = Literal["warmup", "finetune"]
Scheduler = LRScheduler | ReduceLROnPlateau


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
    # Photos unreadable during this run (path → why), each stood in for by one of its class.
    skipped_images: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ArcFaceNet(nn.Module):
    """Embedding model and ArcFace as one module, so DDP synchronises both."""

    def __init__(self, model: EmbeddingModel, arcface: ArcFace):
        super().__init__()
        self.model = model
        self.arcface = arcface

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.arcface(self.model(images), labels)


@dataclass
class Trainables:
    net: ArcFaceNet
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    scaler: torch.amp.GradScaler
    # The averaged copy of net.model (ema_decay set): what is validated and saved as "model".
    ema: ModelEmaV3 | None = None


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
    artifacts_dir: str | Path | None = None,
) -> TrainResult:
    """Train per ``config``, resuming from latest_model.pt unless ``config.training.fresh``.

    ``hardware`` (from ``resolve_hardware``, which already applied use_bf16 / num_workers /
    gradient_accumulation_steps from the config or the GPU resource) decides the device,
    precision, loader workers and accumulation; the config's copies of those are not read here.

    Under torchrun every rank calls this; rank 0 alone logs, calls ``on_epoch_end`` (with the
    metrics row) and writes files. A ``should_stop`` request makes the loop return with
    ``interrupted=True``: in one process it is polled before every step; under DDP the ranks agree
    on it every ``distributed.STOP_AGREEMENT_EVERY`` optimizer steps and after every epoch.
    latest_model.pt keeps the last completed epoch and the partial epoch runs again on resume.

    The training step runs compiled or eager per ``config.training.compile`` (``compiling``);
    validation embeds eagerly (its batch shapes vary, and it is the smaller part of an epoch).

    Before any model is built, every photo of train and val must be on disk as the manifest in
    ``artifacts_dir`` recorded it (``preflight``). One that vanishes or breaks later is skipped:
    another photo of its class takes its place, and each epoch's metrics row counts them.
    """
    info = distributed.current()
    log = log if info.is_main else _silent
    device = _select_device(hardware, info)
    _configure_backends(hardware)
    stop = distributed.StopAgreement(should_stop, device)
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    latest_path, best_path = checkpoint_dir / ckpt.LATEST, checkpoint_dir / ckpt.BEST

    # --- data ---
    tables = read_splits(splits_dir, ["train", "val"])
    train_frame, val_frame = tables["train"], tables["val"]
    if train_frame.empty or val_frame.empty:
        raise UserError(
            f"train.csv and val.csv in {splits_dir} must both have rows (val Recall@1 picks the "
            f"best model and stops early); recreate the splits with val_ratio above 0."
        )
    classes = class_list(train_frame)
    fingerprint = ckpt.splits_fingerprint(splits_dir)
    log(preflight(tables, data_dir, artifacts_dir))
    skipped = SkippedPhotos(log, "a photo of the same class stood in for it")

    # --- model, loss, optimiser ---
    seed_everything(config.seed)  # the same on every rank: identical initial weights
    model = build_embedding_model(config.model)
    arcface = ArcFace(
        config.model.embedding_dim,
        len(classes),
        arcface_scale(config.model, len(classes)),
        config.model.arcface_m_warmup,
        config.model.arcface_subcenters,
    )
    memory_format = torch.channels_last if hardware.channels_last else torch.preserve_format
    net = ArcFaceNet(model, arcface).to(device, memory_format=memory_format)
    amp_dtype, use_scaler = amp_settings(hardware.precision)
    parts = make_trainables(net, config.training, device, use_scaler)

    # --- resume ---
    if info.is_main:
        ckpt.remove_stale_temp_files(checkpoint_dir)
    state = RunState()
    if latest_path.exists() and not config.training.fresh:
        state = resume_from(latest_path, parts, config, classes, fingerprint, info)
        log(f"Resuming from {latest_path} after epoch {state.epoch}.")
        for row in state.history:  # epochs from before photos were skipped: none were
            row.setdefault("skipped_images", 0)
    else:
        seed_everything(config.seed + info.rank)  # distinct augmentations per rank
    if info.is_main:
        # Rewritten from the checkpoint: rows of epochs that ran after it are dropped.
        ckpt.write_metrics_csv(checkpoint_dir / ckpt.METRICS, state.history)

    image_cache = open_cache(
        artifacts_dir, data_dir, config.data.image_size, config.data.image_cache
    )
    if image_cache is not None and info.is_main:
        cached, total = image_cache.count_cached(
            [*train_frame["image_path"], *val_frame["image_path"]]
        )
        log(f"Image cache {image_cache.folder}: {cached} of {total} photos read from it.")
    data = make_training_data(
        config=config,
        model=model,
        data_dir=data_dir,
        train_frame=train_frame,
        val_frame=val_frame,
        classes=classes,
        hardware=hardware,
        info=info,
        image_cache=image_cache,
    )
    ks = sorted({1, *config.evaluation.recall_k_values})
    _log_setup(log, data, len(val_frame), len(classes), hardware, info)
    batchnorm_statistics = effective_batchnorm_statistics(
        config.training.batchnorm_statistics, config.model
    )
    log(describe_batchnorm_statistics(config.training.batchnorm_statistics, batchnorm_statistics))
    if state.stopped_early:
        log(f"Nothing to train: {latest_path} stopped early at epoch {state.epoch}; use --fresh.")
    elif state.epoch >= config.training.total_epochs:
        log(
            f"Nothing to train: {latest_path} is at epoch {state.epoch} of "
            f"{config.training.total_epochs}; raise --total_epochs to continue or use --fresh."
        )

    ddp: DistributedDataParallel | None = None
    stepped: nn.Module | None = None  # what trains: net, its DDP wrapper, either one compiled
    compile_setting = config.training.compile
    trial = functools.partial(
        _trial_step,
        data.sampler.p * data.sampler.k,
        config.data.image_size,
        len(classes),
        device,
        amp_dtype,
        hardware.channels_last,
    )
    interrupted = False
    # After every optimiser step, also one whose fp16 GradScaler skipped: the EMA then moves a
    # little towards unchanged weights, which needs no special case.
    ema_update = functools.partial(parts.ema.update, model) if parts.ema is not None else _nothing
    show = progress and info.is_main
    epochs = range(state.epoch, config.training.total_epochs)
    # The overall bar's ETA assumes every epoch runs; early stopping can end sooner.
    for epoch in progress_bar(epochs, desc="training", unit="epoch", enabled=show, position=0):
        if state.stopped_early:
            break
        # --- phase ---
        phase = phase_for_epoch(epoch, config.training.warmup_epochs)
        net.train()
        apply_phase(model, arcface, phase, config.model, batchnorm_statistics)
        if stepped is None or epoch == config.training.warmup_epochs:
            # DDP registers the parameters that require grad when it is built, and a compiled
            # graph is specialised to them: build both after freezing, and again when the backbone
            # is unfrozen, or DDP would wait for gradients that never come (warm-up) or never
            # all-reduce the backbone's (fine-tuning).
            stepped = ddp = None  # the old reducer goes before the new one is built
            stepped, ddp, choice = build_stepped(net, info, device, compile_setting, trial, log)
            if compiling.needs_trial(compile_setting, device.type):
                log(f"Training step: {choice.reason}.")
            if choice.failed:
                compile_setting = "off"  # one warning per run, not one per phase
        data.sampler.set_epoch(epoch)
        lr = current_lr(parts.optimizer)
        started = time.perf_counter()

        # --- forward, loss, backward, step (one pass over the P×K batches) ---
        stats = train_epoch(
            stepped,
            skipped.watch(
                progress_bar(
                    data.train_loader,
                    desc=f"epoch {epoch + 1}/{config.training.total_epochs}",
                    unit="batch",
                    enabled=show,
                    leave=False,  # the epoch's summary line takes its place
                )
            ),
            parts.optimizer,
            parts.scaler,
            device=device,
            accum_steps=hardware.accum_steps,
            amp_dtype=amp_dtype,
            channels_last=hardware.channels_last,
            no_sync=ddp.no_sync if ddp is not None else nullcontext,
            should_stop=stop.poll,
            after_step=ema_update,
        )
        if stats.interrupted:
            interrupted = True
            break

        # --- validate ---
        try:
            measured = model if parts.ema is None else parts.ema.module
            recalls = validate(
                measured, data, device, amp_dtype, hardware.channels_last, ks, stop, skipped
            )
        except Interrupted:
            interrupted = True
            break

        # --- schedule, early stop ---
        step_scheduler(parts.scheduler, recalls[1])
        patience = config.training.early_stopping_patience
        improved = record_epoch(state, recalls[1], phase, patience)
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
            "skipped_images": _skipped_over_ranks(skipped.end_epoch(), device, info),
        }
        state.history.append(row)

        # --- checkpoint ---
        if info.is_main:
            payload = checkpoint_payload(
                config, state, parts, classes=classes, fingerprint=fingerprint, hardware=hardware
            )
            if improved:  # best first: a kill between the two writes re-runs this epoch
                ckpt.save_checkpoint(best_path, ckpt.inference_only(payload))
            ckpt.save_checkpoint(latest_path, payload)
            ckpt.write_metrics_csv(checkpoint_dir / ckpt.METRICS, state.history)
            if on_epoch_end is not None:
                on_epoch_end(dict(row))
        distributed.barrier()  # the other ranks wait until the checkpoint is complete
        log(_describe_epoch(row, config.training.total_epochs, improved))
        if state.stopped_early:
            log(f"Early stopping: no val Recall@1 improvement for {patience} epochs.")
        # Under DDP, a request that came after the epoch's last agreement is agreed on here,
        # so even an epoch shorter than STOP_AGREEMENT_EVERY steps stops the run within one epoch.
        more = not state.stopped_early and state.epoch < config.training.total_epochs
        if more and stop.agree():
            interrupted = True
            break

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
        skipped_images=dict(skipped.in_run),
    )


# --- data ---


@dataclass
class TrainingData:
    train_set: ImageDataset
    sampler: PKBatchSampler
    train_loader: DataLoader
    eval_loader: DataLoader  # this rank's share of train (gallery) + val (queries), in order
    eval_labels: np.ndarray  # class codes of all of train then val (every rank's share)
    n_eval: int


def make_training_data(
    *,
    config: PipelineConfig,
    model: EmbeddingModel,
    data_dir: str | Path,
    train_frame: pd.DataFrame,
    val_frame: pd.DataFrame,
    classes: list[str],
    hardware: HardwareSettings,
    info: distributed.DistInfo,
    image_cache: ImageCache | None = None,
) -> TrainingData:
    size = config.data.image_size
    train_set = ImageDataset(
        train_frame,
        data_dir,
        classes,
        train_transform(config.augmentation, size, model.mean, model.std, model.interpolation),
        size,
        refill_groups=train_frame["class_name"].tolist(),
        image_cache=image_cache,
    )
    sampler = PKBatchSampler(
        train_set.labels,
        train_set.object_ids,
        config.training.samples_per_class,
        config.training.num_classes_per_batch,
        seed=config.seed,
        rank=info.rank,
        world_size=info.world_size,
        multiple_of=hardware.accum_steps,
    )
    loading = loader_settings(hardware)
    train_loader = make_loader(
        train_set,
        num_workers=hardware.num_workers,
        pin_memory=loading.pin_memory,
        prefetch_factor=loading.prefetch_factor,
        batch_sampler=sampler,
    )
    # One embedding pass per epoch over train (the gallery) then val (the queries).
    both = pd.concat([train_frame, val_frame], ignore_index=True)
    eval_set = ImageDataset(
        both,
        data_dir,
        classes,
        eval_transform(size, model.mean, model.std, model.interpolation),
        size,
        # A val query stands in for a val query, a gallery photo for a gallery photo: a query
        # replaced by its own gallery twin would find itself.
        refill_groups=[(i < len(train_frame), c) for i, c in enumerate(both["class_name"])],
        image_cache=image_cache,
    )
    eval_loader = make_loader(
        Subset(eval_set, distributed.shard_indices(len(eval_set), info)),
        num_workers=hardware.num_workers,
        pin_memory=loading.pin_memory,
        batch_size=config.evaluation.embedding_batch_size,
        prefetch_factor=loading.prefetch_factor,
        persistent_workers=loading.persistent_workers,
    )
    labels = np.asarray(eval_set.labels, dtype=np.int64)
    return TrainingData(train_set, sampler, train_loader, eval_loader, labels, len(eval_set))


# --- phase ---


def phase_for_epoch(epoch_index: int, warmup_epochs: int) -> Phase:
    """Phase of the 0-based epoch ``epoch_index``; a resumed run derives it the same way."""
    return "warmup" if epoch_index < warmup_epochs else "finetune"


def margin_for_phase(phase: Phase, model_cfg: ModelConfig) -> float:
    return model_cfg.arcface_m_warmup if phase == "warmup" else model_cfg.arcface_m_finetune


def arcface_scale(model_cfg: ModelConfig, num_classes: int) -> float:
    if model_cfg.arcface_scale_mode == "adacos":
        return adacos_scale(num_classes)
    return model_cfg.arcface_s


def apply_phase(
    model: EmbeddingModel,
    arcface: ArcFace,
    phase: Phase,
    model_cfg: ModelConfig,
    batchnorm_statistics: BatchNormStatistics,
) -> None:
    """Freeze or unfreeze the backbone, set the margin and which BatchNorm running statistics
    update (``TrainingConfig.batchnorm_statistics``); call after ``module.train()``."""
    frozen = phase == "warmup"
    model.backbone.requires_grad_(not frozen)
    # requires_grad=False alone would still update BatchNorm running statistics in train mode;
    # eval mode keeps the pretrained ones (and normalises with them instead of the batch's).
    if frozen and batchnorm_statistics != "always_update":
        model.backbone.eval()  # nothing in a frozen backbone is trained: no dropout either
    elif batchnorm_statistics == "frozen":
        freeze_batchnorm(model.backbone)  # its other layers train as usual
    arcface.margin = margin_for_phase(phase, model_cfg)


def describe_batchnorm_statistics(setting: str, effective: BatchNormStatistics) -> str:
    """The log line that says which BatchNorm statistics the run updates, and why for auto."""
    weights = "pretrained" if effective == "frozen" else "random"
    why = f" (batchnorm_statistics auto: {weights} weights)" if setting == "auto" else ""
    return f"Backbone BatchNorm statistics: {effective}{why}."


def freeze_batchnorm(module: nn.Module) -> None:
    """Every BatchNorm layer of ``module`` to eval mode; other layers keep their mode."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


# --- optimiser and learning-rate schedule (both schedules step once per epoch) ---


def make_trainables(
    net: ArcFaceNet, cfg: TrainingConfig, device: torch.device, use_scaler: bool
) -> Trainables:
    optimizer = make_optimizer(net, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    # The EMA starts from the initial weights and follows every optimiser step with a fixed decay
    # (no timm warm-up of the decay: the run's state is then the averaged weights alone, which
    # makes a resume exact). Only the embedding model: ArcFace is not used after training.
    ema = None if cfg.ema_decay is None else ModelEmaV3(net.model, decay=cfg.ema_decay)
    return Trainables(net, optimizer, make_scheduler(optimizer, cfg), scaler, ema)


def make_optimizer(net: ArcFaceNet, cfg: TrainingConfig) -> AdamW:
    """AdamW over every parameter; the new parts at ``learning_rate × head_lr_multiplier``.

    All parameters from the start: frozen ones (backbone during warm-up) have no gradient, and
    AdamW skips a parameter without gradient entirely (no update, no weight decay). The embedding
    head and ArcFace centres start from random values while the backbone is pretrained, so they
    may learn faster (the 1st-place Happywhale solution: 10×). With the multiplier at 1 there is
    one group, as before; otherwise the backbone's group comes first, so ``current_lr`` (the
    metrics row's ``lr``) stays the backbone's. Both schedules scale every group alike.
    """
    lr = cfg.learning_rate
    if cfg.head_lr_multiplier == 1.0:
        return AdamW(net.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    backbone = list(net.model.backbone.parameters())
    in_backbone = {id(p) for p in backbone}
    new_parts = [p for p in net.parameters() if id(p) not in in_backbone]
    groups = [
        {"params": backbone, "lr": lr},
        {"params": new_parts, "lr": lr * cfg.head_lr_multiplier},
    ]
    return AdamW(groups, lr=lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: Optimizer, cfg: TrainingConfig) -> Scheduler:
    if cfg.scheduler_type == "cosine_warm_restarts":
        return CosineAnnealingWarmRestarts(optimizer, T_0=cfg.cosine_t0, T_mult=cfg.cosine_t_mult)
    # Val Recall@1 is better when higher, hence mode="max".
    return ReduceLROnPlateau(
        optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )


def step_scheduler(scheduler: Scheduler, val_recall_at_1: float) -> None:
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(val_recall_at_1)
    else:
        scheduler.step()


def current_lr(optimizer: Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


# --- early stop ---


def record_epoch(state: RunState, val_recall_at_1: float, phase: Phase, patience: int) -> bool:
    """Count one more completed epoch in ``state``; True when it is the best so far."""
    state.epoch += 1
    improved = val_recall_at_1 > state.best_recall
    if improved:
        state.best_recall, state.best_epoch = val_recall_at_1, state.epoch
        state.epochs_without_improvement = 0
    elif phase == "finetune":
        # Warm-up epochs without improvement do not count: patience is for fine-tuning.
        state.epochs_without_improvement += 1
    # Early stopping waits for fine-tuning: a plateau with a frozen backbone says little.
    state.stopped_early = 0 < patience <= state.epochs_without_improvement and phase == "finetune"
    return improved


# --- forward, loss, backward, step ---


def build_stepped(
    net: ArcFaceNet,
    info: distributed.DistInfo,
    device: torch.device,
    setting: compiling.CompileSetting,
    make_trial: Callable[[], Callable[[nn.Module], None]],
    log: Callable[[str], None],
) -> tuple[nn.Module, DistributedDataParallel | None, compiling.CompileChoice]:
    """The module the steps run (``net``, under DDP its wrapper, compiled per ``setting``), the
    DDP wrapper (for ``no_sync``) and the compile choice. ``make_trial()`` gives the compile
    warm-up's step; it is only made when ``setting`` asks for a warm-up."""
    built: list[DistributedDataParallel | None] = []

    def build() -> nn.Module:
        ddp = None
        if info.enabled:
            ddp = DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None
            )
        built.append(ddp)
        return ddp or net

    trial = make_trial() if compiling.needs_trial(setting, device.type) else _nothing_to_try
    stepped, choice = compiling.prepare(
        build,
        setting,
        device=device,
        trial=trial,
        state_of=net,
        mean_over_ranks=functools.partial(distributed.mean_over_ranks, device=device),
        warn=log,
    )
    return stepped, built[-1], choice


def _trial_step(
    batch_size: int,
    image_size: int,
    n_classes: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
) -> Callable[[nn.Module], None]:
    """One forward + backward of a batch of the training's shape (for the compile warm-up)."""
    # Its own generator: the run's random stream stays the same whether or not a trial runs.
    generator = torch.Generator(device).manual_seed(0)
    shape = (batch_size, 3, image_size, image_size)
    images = torch.randn(shape, generator=generator, device=device)
    if channels_last:
        images = images.to(memory_format=torch.channels_last)
    labels = torch.arange(batch_size, device=device) % n_classes

    def trial(module: nn.Module) -> None:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = module(images, labels)
        F.cross_entropy(logits.float(), labels).backward()

    return trial


def _nothing_to_try(_: nn.Module) -> None:
    pass


@dataclass
class EpochStats:
    loss: float
    images: int
    seconds: float
    interrupted: bool


def train_epoch(
    net: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    device: torch.device,
    accum_steps: int,
    amp_dtype: torch.dtype | None,
    channels_last: bool = False,
    no_sync: Callable[[], AbstractContextManager] = nullcontext,
    should_stop: Callable[[], bool] = lambda: False,
    after_step: Callable[[], None] = lambda: None,
) -> EpochStats:
    """One pass over ``batches`` (a multiple of ``accum_steps`` long), one optimizer step per group.

    ``net(images, labels)`` returns logits. ``no_sync`` is DDP's: the non-final micro-batches of
    a group only accumulate gradients locally, which are all-reduced once, in the group's last
    backward pass. ``should_stop`` is polled once per optimizer step, before the group's first
    micro-batch (under DDP a poll is a collective only every ``distributed.STOP_AGREEMENT_EVERY``
    polls); when it fires the epoch is abandoned (``interrupted=True``). ``after_step`` runs after
    each optimizer step (the EMA update). Nothing here waits for the device within an epoch.
    """
    start = time.perf_counter()
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    )
    loss_sum = torch.zeros((), device=device)
    images_seen = 0
    optimizer.zero_grad(set_to_none=True)
    for step, (images, labels) in enumerate(batches):
        if step % accum_steps == 0 and should_stop():
            return EpochStats(0.0, images_seen, time.perf_counter() - start, interrupted=True)
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        last_of_group = (step + 1) % accum_steps == 0
        with nullcontext() if last_of_group else no_sync():
            with autocast:
                logits = net(images, labels)
            loss = F.cross_entropy(logits.float(), labels)
            # .grad sums over the group's backward passes; dividing each micro-batch's mean loss
            # by accum_steps makes that sum the gradient of the mean over P·K·accum_steps images.
            # The GradScaler (fp16 only) scales the loss so small gradients do not underflow.
            scaler.scale(loss / accum_steps).backward()
        if last_of_group:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            after_step()
        loss_sum += loss.detach() * labels.shape[0]  # stays on the device: no sync per step
        images_seen += labels.shape[0]
    mean_loss = distributed.mean_over_ranks(float(loss_sum) / max(images_seen, 1), device)
    return EpochStats(mean_loss, images_seen, time.perf_counter() - start, interrupted=False)


# --- validate ---


def validate(
    model: EmbeddingModel,
    data: TrainingData,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    ks: list[int],
    stop: distributed.StopAgreement,
    skipped: SkippedPhotos | None = None,
) -> dict[int, float]:
    """Val Recall@K: val images (queries) searched among train images (gallery), exactly.

    The same embedding loop, exact index and Recall@K as the evaluate step, so the best epoch's
    val Recall@1 here is what evaluation reports for best_model.pt on val. Raises ``Interrupted``
    when the stop request is agreed on mid-pass.
    """
    shard = compute_embeddings(
        model,
        data.eval_loader if skipped is None else skipped.watch(data.eval_loader),
        device,
        amp_dtype=amp_dtype,
        channels_last=channels_last,
        should_stop=stop.poll,
    )
    rows = distributed.gather_rows(torch.from_numpy(shard).to(device), data.n_eval)
    embeddings, labels, n_gallery = rows.cpu().numpy(), data.eval_labels, len(data.train_set)
    return exact_recall_at_k(
        embeddings[n_gallery:], labels[n_gallery:], embeddings[:n_gallery], labels[:n_gallery], ks
    )


def exact_recall_at_k(
    queries: np.ndarray,
    query_codes: np.ndarray,
    gallery: np.ndarray,
    gallery_codes: np.ndarray,
    ks: list[int],
) -> dict[int, float]:
    """Recall@K of unit-vector ``queries`` among ``gallery`` by exact (flat) nearest neighbours."""
    # A CPU index even on a GPU machine: the training processes hold the GPU memory.
    index = build_index(gallery, "flat", use_gpu=False)
    _, indices = search(index, queries, max(ks))
    return recall_at_k(query_codes, neighbour_codes(indices, gallery_codes), ks)


# --- checkpoint ---


def checkpoint_payload(
    config: PipelineConfig,
    state: RunState,
    parts: Trainables,
    *,
    classes: list[str],
    fingerprint: str,
    hardware: HardwareSettings,
) -> dict[str, Any]:
    """The checkpoint (format: ``checkpoint``) of ``parts`` at the end of epoch ``state.epoch``."""
    phase = phase_for_epoch(state.epoch - 1, config.training.warmup_epochs)
    model = parts.net.model
    return ckpt.payload(
        state,
        config=config,
        phase=phase,
        margin=margin_for_phase(phase, config.model),
        model=model,
        arcface=parts.net.arcface,
        optimizer=parts.optimizer,
        scheduler=parts.scheduler,
        scaler=parts.scaler,
        mean=model.mean,
        std=model.std,
        rng=capture_rng_state(),
        classes=classes,
        fingerprint=fingerprint,
        hardware=hardware.to_dict(),
        ema=parts.ema.module if parts.ema is not None else None,
    )


def resume_from(
    path: Path,
    parts: Trainables,
    config: PipelineConfig,
    classes: list[str],
    fingerprint: str,
    info: distributed.DistInfo,
) -> RunState:
    """Load ``path`` (latest_model.pt) into ``parts`` after checking it fits this run."""
    saved = ckpt.read_checkpoint(path)
    ckpt.check_resume_compatible(
        saved, config=config, classes=classes, fingerprint=fingerprint, path=path
    )
    state = restore(saved, parts)
    # Rank 0's random state is in the checkpoint; the other ranks get fresh, distinct seeds.
    if info.is_main:
        restore_rng_state(ckpt.saved_rng_state(saved))
    else:
        seed_everything(config.seed + 1000 * state.epoch + info.rank)
    return state


def restore(saved: dict[str, Any], parts: Trainables) -> RunState:
    """Load weights and optimiser state from ``saved`` into ``parts``; return the run's state."""
    return ckpt.restore(
        saved,
        model=parts.net.model,
        arcface=parts.net.arcface,
        optimizer=parts.optimizer,
        scheduler=parts.scheduler,
        scaler=parts.scaler,
        ema=parts.ema.module if parts.ema is not None else None,
    )


# --- device and logs ---


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
    skipped = f", {row['skipped_images']} photos skipped" if row["skipped_images"] else ""
    return (
        f"epoch {row['epoch']}/{total_epochs} {row['phase']} m={row['margin']:g} "
        f"lr={row['lr']:.2e} loss={row['train_loss']:.4f} val {recalls} "
        f"({row['seconds']:.1f} s, {row['images_per_second']:.1f} img/s{skipped})"
        f"{' best' if improved else ''}"
    )


def _skipped_over_ranks(count: int, device: torch.device, info: distributed.DistInfo) -> int:
    """Under DDP each rank reads its own batches: the sum (a photo two ranks skipped counts
    twice)."""
    if not info.enabled:
        return count
    return round(distributed.mean_over_ranks(float(count), device) * info.world_size)


def _silent(_: str) -> None:
    pass


def _nothing() -> None:
    pass

"""What a training run carries from epoch to epoch, into a checkpoint and back out of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from imgcls_pipeline.core.hardware import HardwareSettings
from imgcls_pipeline.core.settings import PipelineConfig
from imgcls_pipeline.core.training.checkpoint import FORMAT
from imgcls_pipeline.core.training.optim import Scheduler
from imgcls_pipeline.core.training.phases import margin_for_phase, phase_for_epoch
from imgcls_pipeline.core.training.rng import capture_rng_state
from imgcls_pipeline.core.training.train_step import ArcFaceNet


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    best_recall: float = -1.0  # best val Recall@1 so far (-1: none yet)
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # the rows of metrics.csv


@dataclass
class Trainables:
    net: ArcFaceNet
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    scaler: torch.amp.GradScaler


def checkpoint_payload(
    config: PipelineConfig,
    state: RunState,
    parts: Trainables,
    *,
    classes: list[str],
    fingerprint: str,
    hardware: HardwareSettings,
) -> dict[str, Any]:
    """The checkpoint dict (keys documented in ``core.checkpoint``), captured at an epoch's end."""
    phase = phase_for_epoch(state.epoch - 1, config.training.warmup_epochs)
    model = parts.net.model
    return {
        "format": FORMAT,
        "epoch": state.epoch,
        "phase": phase,
        "margin": margin_for_phase(phase, config.model),
        "model": _fp32_cpu(model.state_dict()),
        "arcface": _fp32_cpu(parts.net.arcface.state_dict()),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "best_val_recall@1": state.best_recall,
        "best_epoch": state.best_epoch,
        "epochs_without_improvement": state.epochs_without_improvement,
        "stopped_early": state.stopped_early,
        "rng": capture_rng_state(),
        "config": config.to_dict(),
        "classes": list(classes),
        "splits_fingerprint": fingerprint,
        "backbone": config.model.backbone,
        "embedding_dim": config.model.embedding_dim,
        "mean": list(model.mean),
        "std": list(model.std),
        "image_size": config.data.image_size,
        "hardware": hardware.to_dict(),
        "history": [dict(row) for row in state.history],
    }


def restore(saved: dict[str, Any], parts: Trainables) -> RunState:
    """Load weights and optimiser state from ``saved`` into ``parts``; return the run's state."""
    parts.net.model.load_state_dict(saved["model"])
    parts.net.arcface.load_state_dict(saved["arcface"])
    parts.optimizer.load_state_dict(saved["optimizer"])
    parts.scheduler.load_state_dict(saved["scheduler"])
    parts.scaler.load_state_dict(saved["scaler"])
    return RunState(
        epoch=saved["epoch"],
        best_recall=saved["best_val_recall@1"],
        best_epoch=saved["best_epoch"],
        epochs_without_improvement=saved["epochs_without_improvement"],
        stopped_early=saved["stopped_early"],
        history=list(saved["history"]),
    )


def _fp32_cpu(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Weights are fp32 already (autocast never changes them); this also makes a checkpoint written
    # on one GPU load anywhere.
    return {
        k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
        for k, v in state_dict.items()
    }

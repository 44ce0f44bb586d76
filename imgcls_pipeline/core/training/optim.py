"""AdamW and the two learning-rate schedules of the specification, both stepped once per epoch."""

from __future__ import annotations

from torch import nn
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, LRScheduler, ReduceLROnPlateau

from imgcls_pipeline.core.settings import TrainingConfig

Scheduler = LRScheduler | ReduceLROnPlateau


def make_optimizer(module: nn.Module, cfg: TrainingConfig) -> AdamW:
    # All parameters from the start: frozen ones (backbone during warm-up) have no gradient, and
    # AdamW skips a parameter without gradient entirely (no update, no weight decay).
    return AdamW(module.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


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

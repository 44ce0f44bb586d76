"""One epoch of optimisation: forward under autocast, ArcFace loss, accumulated backward, step."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from imgcls_pipeline.core.training import distributed
from imgcls_pipeline.core.training.arcface import ArcFace
from imgcls_pipeline.core.training.model import EmbeddingModel


def amp_settings(precision: str) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether to use a GradScaler) for ``HardwareSettings.precision``."""
    # fp16 has 5 exponent bits: small gradients underflow to zero unless the loss is scaled up
    # first (GradScaler). bf16 keeps fp32's exponent range, so it needs no scaling. Either way the
    # weights and optimizer state stay fp32; autocast only lowers the precision of activations.
    return {
        "bf16": (torch.bfloat16, False),
        "fp16": (torch.float16, True),
        "fp32": (None, False),
    }[precision]


class ArcFaceNet(nn.Module):
    """Embedding model and ArcFace as one module, so DDP synchronises both."""

    def __init__(self, model: EmbeddingModel, arcface: ArcFace):
        super().__init__()
        self.model = model
        self.arcface = arcface

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.arcface(self.model(images), labels)


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
) -> EpochStats:
    """One pass over ``batches`` (a multiple of ``accum_steps`` long), one optimizer step per group.

    ``net(images, labels)`` returns logits. ``no_sync`` is DDP's: gradients are all-reduced once
    per optimizer step instead of once per micro-batch. ``should_stop`` is polled before each
    micro-batch; when it fires the epoch is abandoned (``interrupted=True``).
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
        if distributed.any_rank(should_stop(), device):
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
        loss_sum += loss.detach() * labels.shape[0]  # stays on the device: no sync per step
        images_seen += labels.shape[0]
    mean_loss = distributed.mean_over_ranks(float(loss_sum) / max(images_seen, 1), device)
    return EpochStats(mean_loss, images_seen, time.perf_counter() - start, interrupted=False)

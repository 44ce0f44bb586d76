"""Throughput of our training step against a bare PyTorch training loop on the same backbone.

Ours: EmbeddingModel + ArcFace (``ArcFaceNet``), AdamW, ``train_epoch`` with the precision the
hardware table picks (fp32 on the CPU, bf16/fp16 autocast on a GPU). Bare: the timm model with its
own classifier, cross-entropy, AdamW, the same autocast. Both see the same pre-made batches (no
data loading), so the ratio is the cost of our step's extra parts (embedding head, ArcFace,
accumulation bookkeeping). Goal: ratio ≥ 0.95. Median of rounds that alternate
which runs first, to damp noise.

    uv run python benchmarks/bench_train_step.py [--backbone tf_efficientnetv2_b0] [--size 128]
        [--batch 8] [--steps 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import timm
import torch
import torch.nn.functional as F

from imgcls_pipeline.core.hardware import amp_settings, detect_device_props, resolve_hardware
from imgcls_pipeline.core.settings import ModelConfig, TrainingConfig
from imgcls_pipeline.core.training.arcface import ArcFace
from imgcls_pipeline.core.training.loop import ArcFaceNet, make_optimizer, train_epoch
from imgcls_pipeline.core.training.model import build_embedding_model

NUM_CLASSES = 4


def ours(
    args: argparse.Namespace,
    device: torch.device,
    precision: str,
    memory_format,
    backend: str | None = None,
):
    """Our step; with ``backend``, torch.compile'd as the loop's compile=on does."""
    model_cfg = ModelConfig(backbone=args.backbone, pretrained=False, embedding_dim=512)
    net = ArcFaceNet(build_embedding_model(model_cfg), ArcFace(512, NUM_CLASSES)).to(
        device, memory_format=memory_format
    )
    net.train()
    stepped = net if backend is None else torch.compile(net, backend=backend)
    optimizer = make_optimizer(net, TrainingConfig())
    amp_dtype, use_scaler = amp_settings(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

    def run(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        train_epoch(
            stepped,
            batches,
            optimizer,
            scaler,
            device=device,
            accum_steps=1,
            amp_dtype=amp_dtype,
            channels_last=memory_format == torch.channels_last,
        )

    return run


def bare(
    args: argparse.Namespace,
    device: torch.device,
    precision: str,
    memory_format,
    backend: str | None = None,
):
    model = timm.create_model(args.backbone, pretrained=False, num_classes=NUM_CLASSES)
    model = model.to(device, memory_format=memory_format).train()
    forward = model if backend is None else torch.compile(model, backend=backend)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    amp_dtype, use_scaler = amp_settings(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    autocast = torch.autocast(device.type, amp_dtype) if amp_dtype is not None else nullcontext()

    def run(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        for images, labels in batches:
            images = images.to(device, non_blocking=True, memory_format=memory_format)
            labels = labels.to(device, non_blocking=True)
            with autocast:
                loss = F.cross_entropy(forward(images), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    return run


def timed(run: Callable[[list], None], batches: list, device: torch.device) -> float:
    start = time.perf_counter()
    run(batches)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnetv2_b0")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    hardware = resolve_hardware(detect_device_props(), os.cpu_count() or 1)
    device = torch.device(hardware.device)
    memory_format = torch.channels_last if hardware.channels_last else torch.preserve_format
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.arange(args.batch) % NUM_CLASSES
    batches = [(images, labels)] * args.steps

    runners = {
        "bare": bare(args, device, hardware.precision, memory_format),
        "ours": ours(args, device, hardware.precision, memory_format),
    }
    for run in runners.values():
        run([(images, labels)] * args.warmup)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_number in range(args.rounds):
        # Alternate which runs first: on a shared machine the first and second slot differ.
        order = list(runners) if round_number % 2 == 0 else list(reversed(runners))
        for name in order:
            times[name].append(timed(runners[name], batches, device))

    print(
        f"{args.backbone}, {args.size} px, batch {args.batch}, {hardware.precision} on "
        f"{hardware.name}, median of {args.rounds} rounds × {args.steps} steps"
    )
    speed = {n: args.batch * args.steps / statistics.median(t) for n, t in times.items()}
    print(f"ours: {speed['ours']:.1f} images/s")
    print(f"bare: {speed['bare']:.1f} images/s")
    print(f"ratio ours/bare: {speed['ours'] / speed['bare']:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()

"""One rank of gpu_check's scaling section: our training step under DDP, run by torchrun.

    torchrun --standalone --nproc_per_node N benchmarks/gpu_check_ddp.py --plan-json '{...}' \\
        --output result.json

Every rank trains on its own synthetic batches (the plan's batch per GPU) through the loop's
``train_epoch`` with a DistributedDataParallel module; rank 0 writes the whole group's images/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch
from bench_train_step import NUM_CLASSES, timed
from gpu_check_sections import Plan
from torch.nn.parallel import DistributedDataParallel

from imgcls_pipeline.core.hardware import (
    amp_settings,
    detect_device_props,
    resolve_hardware,
)
from imgcls_pipeline.core.settings import ModelConfig, TrainingConfig
from imgcls_pipeline.core.training import distributed
from imgcls_pipeline.core.training.arcface import ArcFace
from imgcls_pipeline.core.training.loop import ArcFaceNet, make_optimizer, train_epoch
from imgcls_pipeline.core.training.model import build_embedding_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan-json", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    plan = Plan.from_json(args.plan_json)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    hardware = resolve_hardware(detect_device_props(local_rank), os.cpu_count() or 1)
    info = distributed.init_from_env(hardware.device)
    device = torch.device("cuda", local_rank) if hardware.device == "cuda" else torch.device("cpu")
    memory_format = torch.channels_last if hardware.channels_last else torch.preserve_format
    amp_dtype, use_scaler = amp_settings(hardware.precision)
    torch.manual_seed(0)
    model = build_embedding_model(ModelConfig(backbone=plan.backbone, pretrained=False))
    net = ArcFaceNet(model, ArcFace(512, NUM_CLASSES)).to(device, memory_format=memory_format)
    ddp = DistributedDataParallel(net, device_ids=[local_rank] if device.type == "cuda" else None)
    optimizer = make_optimizer(net, TrainingConfig())
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    images = torch.randn(plan.batch, 3, plan.size, plan.size, device=device)
    images = images.contiguous(memory_format=memory_format)
    labels = torch.arange(plan.batch, device=device) % NUM_CLASSES

    def run(batches: list) -> None:
        train_epoch(
            ddp,
            batches,
            optimizer,
            scaler,
            device=device,
            accum_steps=1,
            amp_dtype=amp_dtype,
            channels_last=hardware.channels_last,
            no_sync=ddp.no_sync,
        )

    run([(images, labels)] * 3)
    seconds = [timed(run, [(images, labels)] * plan.steps, device) for _ in range(plan.rounds)]
    distributed.barrier()
    if info.is_main:
        per_rank = plan.batch * plan.steps / statistics.median(seconds)
        result = {
            "world_size": info.world_size,
            "batch_per_process": plan.batch,
            "images_per_second": round(per_rank * info.world_size, 2),
        }
        Path(args.output).write_text(json.dumps(result))
    distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

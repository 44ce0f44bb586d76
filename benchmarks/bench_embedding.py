"""Throughput of ``compute_embeddings`` against a bare ``model(x)`` loop on the same tensors.

Both run the same timm model in eval mode under ``torch.inference_mode()`` over the same
pre-made batches, so the ratio is the cost of the wrapper alone (normalisation, gathering,
host copy). Goal: ratio ≥ 0.95. Best of several alternating rounds, to damp machine noise.

    uv run python benchmarks/bench_embedding.py [--images 256] [--batch 32] [--size 128]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import timm
import torch

from imgcls_pipeline.core.search.embedding import compute_embeddings, inference_settings


def bare_loop(
    model: torch.nn.Module,
    batches: list[torch.Tensor],
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
) -> None:
    """The plain loop, with the same precision and memory format as the wrapper gets."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    with torch.inference_mode(), torch.autocast(device.type, amp_dtype, enabled=bool(amp_dtype)):
        for x in batches:
            model(x.to(device, non_blocking=True, memory_format=memory_format))
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tf_efficientnetv2_b0")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp_dtype, channels_last = inference_settings(device)
    model = timm.create_model(args.model, pretrained=False, num_classes=0).eval().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)
    batches = [
        torch.rand(args.batch, 3, args.size, args.size, generator=generator)
        for _ in range(args.images // args.batch)
    ]
    n = len(batches) * args.batch
    print(
        f"{args.model} {args.size} px, {n} images in batches of {args.batch}, {device}, "
        f"{torch.get_num_threads()} threads, amp {amp_dtype}, channels_last {channels_last}"
    )

    def wrapped() -> None:
        compute_embeddings(model, batches, device, amp_dtype=amp_dtype, channels_last=channels_last)

    def bare() -> None:
        bare_loop(model, batches, device, amp_dtype, channels_last)

    wrapped()  # warm-up: allocator, kernels, first-call overheads
    bare()
    bare_time = wrapped_time = float("inf")
    for _ in range(args.rounds):
        bare_time = min(bare_time, seconds(bare))
        wrapped_time = min(wrapped_time, seconds(wrapped))
    print(f"bare model(x) loop:  {n / bare_time:8.1f} images/s")
    print(f"compute_embeddings:  {n / wrapped_time:8.1f} images/s")
    print(f"ratio: {bare_time / wrapped_time:.3f}")


if __name__ == "__main__":
    main()

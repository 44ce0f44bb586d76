"""The little torch.distributed the training loop needs; all of it is a no-op in one process."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1): nccl on CUDA, gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return current()


def current() -> DistInfo:
    if not dist.is_initialized():
        return DistInfo(rank=0, world_size=1, local_rank=0)
    return DistInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


# Under DDP the ranks agree on a stop request with one all-reduce every this many polls (a poll is
# an optimizer step or a validation batch) and once per epoch: an all-reduce plus .item() before
# every step would make the CPU wait for the GPU to drain, leaving it idle while the next step is
# queued. Once every 16 steps that wait costs a fraction of a percent, and a stop request is still
# honoured within 16 steps (or at the end of the epoch, whichever comes first).
STOP_AGREEMENT_EVERY = 16


class StopAgreement:
    """A stop request (``should_stop``), honoured by every rank at the same step.

    In one process ``poll`` asks ``should_stop`` every time: that is free, so the run stops at
    once. Under DDP a request reaches only the rank that received it (a signal sent to one
    process), so every ``every``-th poll, and at each ``agree``, the ranks all-reduce their flags;
    the polls in between cost nothing.
    Every rank polls the same number of times (equal-length shards and batch lists), so all reach
    the same answer at the same step and none waits in a collective the others have left.
    """

    def __init__(
        self,
        should_stop: Callable[[], bool],
        device: torch.device,
        every: int = STOP_AGREEMENT_EVERY,
    ):
        self._should_stop = should_stop
        self._device = device
        self._every = every
        self._polls = 0

    def poll(self) -> bool:
        """Between two steps: True when the run must stop now (on every rank alike)."""
        if not dist.is_initialized():
            return bool(self._should_stop())
        self._polls += 1
        return self._polls % self._every == 0 and self.agree()

    def agree(self) -> bool:
        """True on every rank if a stop was requested on any (one all-reduce under DDP)."""
        flag = bool(self._should_stop())
        if not dist.is_initialized():
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self._device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


def mean_over_ranks(value: float, device: torch.device) -> float:
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / dist.get_world_size()


def gather_rows(rows: torch.Tensor, total: int) -> torch.Tensor:
    """Undo a strided shard: rank r held rows r, r+W, ...; return all ``total`` rows in order.

    Each rank passes ceil(total / W) rows (the shard padded by repeating its last row).
    """
    if not dist.is_initialized():
        return rows[:total]
    parts = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, rows.contiguous())
    # stack -> (W, n, D); transpose to (n, W, D) so row-major order is 0, 1, 2, ... again
    return torch.stack(parts).transpose(0, 1).reshape(-1, rows.shape[1])[:total]


def shard_indices(total: int, info: DistInfo) -> list[int]:
    """This rank's strided share of range(total), padded to ceil(total / W) entries."""
    indices = list(range(info.rank, total, info.world_size))
    size = -(-total // info.world_size)
    while len(indices) < size:
        indices.append(indices[-1] if indices else 0)
    return indices


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()

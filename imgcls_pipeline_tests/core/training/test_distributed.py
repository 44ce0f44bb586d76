"""The collectives of the training loop, in one process and in two gloo processes on the CPU."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline.core.training import distributed, loop
from imgcls_pipeline.core.training.distributed import DistInfo, StopAgreement
from imgcls_pipeline.core.training.loop import train
from imgcls_pipeline.core.training.model import build_embedding_model
from imgcls_pipeline.core.training.rng import seed_everything
from imgcls_pipeline_tests.core.training.tiny_training import (
    EQUIVALENCE_CONFIG,
    WEIGHT_TOLERANCE,
    cpu_hardware,
    largest_weight_difference,
    make_tiny_splits,
    same_images_every_run,
    tiny_config,
)

CPU = torch.device("cpu")


def run_two_ranks(tmp_path: Path, target: Callable[..., dict], *args: object) -> list[dict]:
    """Run ``target(rank, *args)`` in two gloo processes; return each rank's result dict."""
    mp.spawn(_rank_main, args=(str(tmp_path), target, args), nprocs=2, join=True)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def _rank_main(rank: int, folder: str, target: Callable[..., dict], args: tuple) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    try:
        result = target(rank, *args)
    finally:
        dist.destroy_process_group()
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps(result))


def count_all_reduces() -> list[int]:
    """Wrap ``dist.all_reduce`` (in this process) so every call is counted in the returned list."""
    calls = [0]
    original = dist.all_reduce

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    dist.all_reduce = counted
    return calls


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("total", [0, 1, 5, 8, 9])
def test_shards_cover_every_row_once_and_are_equally_long(world_size, total):
    shards = [
        distributed.shard_indices(total, DistInfo(rank, world_size, rank))
        for rank in range(world_size)
    ]
    size = -(-total // world_size)
    assert all(len(shard) == size for shard in shards)
    # Row-major over (position, rank) is the strided order that gather_rows undoes.
    interleaved = [shards[rank][i] for i in range(size) for rank in range(world_size)]
    assert interleaved[:total] == list(range(total))


def test_one_process_polls_the_request_every_time_without_collectives():
    requests = iter([False, False, True])
    stop = StopAgreement(lambda: next(requests), CPU, every=32)
    assert [stop.poll(), stop.poll(), stop.poll()] == [False, False, True]
    assert StopAgreement(lambda: True, CPU).agree()


def _gather_round_trip(rank: int, total: int) -> dict:
    info = distributed.current()
    everything = torch.arange(total * 3, dtype=torch.float32).reshape(total, 3)
    mine = everything[distributed.shard_indices(total, info)]
    return {"gathered": distributed.gather_rows(mine, total).tolist(), "rank": info.rank}


def test_gather_rows_undoes_the_strided_shard(tmp_path):
    total = 7  # odd: rank 1's shard is padded with a repeated row that must not come back
    results = run_two_ranks(tmp_path, _gather_round_trip, total)
    expected = torch.arange(total * 3, dtype=torch.float32).reshape(total, 3).tolist()
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["gathered"] == expected for r in results)


def _mean_of_rank_values(rank: int, values: list[float]) -> dict:
    return {"mean": distributed.mean_over_ranks(values[rank], CPU)}


def test_mean_over_ranks_is_the_mean_of_every_ranks_value(tmp_path):
    values = [0.25, 2.0]
    results = run_two_ranks(tmp_path, _mean_of_rank_values, values)
    assert results == [{"mean": (0.25 + 2.0) / 2}] * 2
    assert distributed.mean_over_ranks(0.25, CPU) == 0.25  # one process: the value itself


def test_init_from_env_without_world_size_is_one_process_and_joins_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env("cpu") == DistInfo(rank=0, world_size=1, local_rank=0)
    assert not dist.is_initialized()


def _join_as_torchrun_would(rank: int, folder: str, port: int) -> None:
    # The variables torchrun sets for each process it starts.
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE="2",
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    info = distributed.init_from_env("cpu")
    backend = dist.get_backend()
    # Leaving before the other rank has finished connecting would break its connection.
    distributed.barrier()
    distributed.cleanup()
    result = {**dataclasses.asdict(info), "backend": backend, "left": not dist.is_initialized()}
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps(result))


def test_init_from_env_joins_the_group_torchrun_describes(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_join_as_torchrun_would, args=(str(tmp_path), port), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results == [
        {"rank": r, "world_size": 2, "local_rank": r, "backend": "gloo", "left": True}
        for r in range(2)
    ]


def _poll_until_stopped(rank: int, every: int, request_after: int, polls: int) -> dict:
    calls = count_all_reduces()
    done = 0
    # Only rank 1 receives the request (as with a signal sent to one process).
    stop = StopAgreement(lambda: rank == 1 and done >= request_after, CPU, every=every)
    stopped_at = None
    for step in range(polls):
        if stop.poll():
            stopped_at = step
            break
        done += 1
    return {"stopped_at": stopped_at, "all_reduces": calls[0]}


def test_a_request_on_one_rank_stops_both_at_the_same_step_with_one_collective_per_n(tmp_path):
    # every=4: agreements at polls 4, 8, ... Rank 1 asks from its 6th poll on (5 done), so poll 8
    # (step 7) is the first agreement that sees it; 2 all-reduces for 8 polls, not 8.
    results = run_two_ranks(tmp_path, _poll_until_stopped, 4, 5, 20)
    assert results == [{"stopped_at": 7, "all_reduces": 2}] * 2


def _train_until_rank_1_asks_to_stop(rank: int, data_dir: str, splits_dir: str, out: str) -> dict:
    calls = count_all_reduces()
    polls = [0]
    latest = Path(out) / ckpt.LATEST

    def should_stop() -> bool:
        polls[0] += 1
        # Rank 1 alone asks, as soon as epoch 1 is saved (a signal to one process).
        return rank == 1 and latest.exists()

    config = tiny_config(warmup_epochs=1, total_epochs=5, samples_per_class=1)  # 2 steps per rank
    result = train(
        config,
        data_dir=data_dir,
        splits_dir=splits_dir,
        checkpoint_dir=out,
        hardware=cpu_hardware(),
        log=lambda _: None,
        should_stop=should_stop,
    )
    return {
        "interrupted": result.interrupted,
        "last_epoch": result.last_epoch,
        "all_reduces": calls[0],
        "polls": polls[0],
    }


@pytest.mark.slow
def test_ddp_run_stops_on_every_rank_when_one_rank_asks_without_a_collective_per_step(tmp_path):
    data_dir, splits_dir = make_tiny_splits(tmp_path / "tiny")
    out = tmp_path / "checkpoints"
    results = run_two_ranks(
        tmp_path, _train_until_rank_1_asks_to_stop, str(data_dir), str(splits_dir), str(out)
    )
    assert [(r["interrupted"], r["last_epoch"]) for r in results] == [(True, 1)] * 2
    assert ckpt.read_checkpoint(out / ckpt.LATEST)["epoch"] == 1
    # Epoch 1: 2 training steps and the validation batches polled the request without a
    # collective (fewer than STOP_AGREEMENT_EVERY polls); the all-reduces are the epoch's mean
    # loss, its count of skipped photos and the one stop agreement after the epoch. (Gradients
    # go through DDP's reducer.)
    assert all(r["all_reduces"] == 3 for r in results)
    assert all(r["polls"] == 1 for r in results)  # the request was read at that agreement only


def _train_one_rank_of_two(rank: int, data_dir: str, splits_dir: str, out: str) -> dict:
    loop.train_transform = same_images_every_run  # in this spawned process only
    lines: list[str] = []
    train(
        tiny_config(**EQUIVALENCE_CONFIG),
        data_dir=data_dir,
        splits_dir=splits_dir,
        checkpoint_dir=out,
        hardware=cpu_hardware(accum_steps=1),
        log=lines.append,
    )
    return {"lines": lines}


@pytest.mark.slow
def test_two_ddp_processes_train_the_weights_one_process_trains_on_the_same_global_batches(
    tmp_path, monkeypatch
):
    """Rank r takes P×K batches r, r+2, ... of the sampler's one sequence; one process with
    gradient accumulation 2 takes batches 2s and 2s+1 into step s: the same global batch of 6
    photos per optimizer step, each P×K batch normalised on its own by BatchNorm either way."""
    data_dir, splits_dir = make_tiny_splits(tmp_path / "tiny")
    ddp_dir, one_dir = tmp_path / "ddp", tmp_path / "one"
    results = run_two_ranks(
        tmp_path, _train_one_rank_of_two, str(data_dir), str(splits_dir), str(ddp_dir)
    )
    assert any("2 batches per epoch per rank (2 ranks)" in line for line in results[0]["lines"])

    monkeypatch.setattr(loop, "train_transform", same_images_every_run)
    lines: list[str] = []
    one = train(
        tiny_config(**EQUIVALENCE_CONFIG),
        data_dir=data_dir,
        splits_dir=splits_dir,
        checkpoint_dir=one_dir,
        hardware=cpu_hardware(accum_steps=2),
        log=lines.append,
    )
    assert one.last_epoch == 2 and any("4 batches per epoch;" in line for line in lines)
    difference = largest_weight_difference(ddp_dir / ckpt.LATEST, one_dir / ckpt.LATEST)
    assert difference < WEIGHT_TOLERANCE, difference
    # Training moved the weights far more than the tolerance.
    seed_everything(tiny_config().seed)
    initial = build_embedding_model(tiny_config().model).state_dict()
    trained = ckpt.read_checkpoint(one_dir / ckpt.LATEST)["model"]
    assert max(float((trained[k] - v).abs().max()) for k, v in initial.items()) > 1e-3

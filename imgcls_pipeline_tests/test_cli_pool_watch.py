import os
import socket
import subprocess
import sys

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.test_utils import create_run_for_test

from imgcls_pipeline.cli.pool_watch import LAUNCHER_TAG, PoolWatch, launcher_tag, pools_of
from imgcls_pipeline.definitions import defs

POOLS = "concurrency:\n  pools:\n    granularity: op\n    default_limit: 1\n"


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + POOLS)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def holder_and_waiter(instance, holder_pid: int):
    """A run holding the gpu pool's one slot, and this process's run waiting for it."""
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default("gpu")
    holder = create_run_for_test(
        instance,
        status=DagsterRunStatus.STARTED,
        tags={LAUNCHER_TAG: f"{socket.gethostname()} {holder_pid}"},
    )
    assert storage.claim_concurrency_slot("gpu", holder.run_id, "trained_checkpoint").is_claimed
    waiter = create_run_for_test(instance, status=DagsterRunStatus.STARTED, tags=launcher_tag())
    assert not storage.claim_concurrency_slot("gpu", waiter.run_id, "trained_checkpoint").is_claimed
    return holder, waiter


def engine_messages(instance, run_id):
    return [entry.message for entry in instance.all_logs(run_id) if entry.is_dagster_event]


def test_waiting_for_a_live_holder_is_said_on_the_terminal_and_in_the_run_log(instance):
    holder, waiter = holder_and_waiter(instance, os.getppid())  # alive: this test's parent
    said = []
    watch = PoolWatch(instance, ["gpu"], say=said.append)
    watch.check_once()
    watch.check_once()  # said once, not every second
    assert len(said) == 1
    assert said[0].startswith("Waiting for the gpu pool, which run ")
    assert f"pid {os.getppid()} on {socket.gethostname()}" in said[0]
    assert said[0] in engine_messages(instance, waiter.run_id)  # the UI shows the run's log
    assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots  # untouched

    instance.event_log_storage.free_concurrency_slots_for_run(holder.run_id)
    assert instance.event_log_storage.claim_concurrency_slot(
        "gpu", waiter.run_id, "trained_checkpoint"
    ).is_claimed
    watch.check_once()
    assert said[-1] == "The gpu pool is free now; the run goes on."


def test_a_slot_whose_imgcls_process_died_is_freed(instance):
    pid = dead_pid()
    holder, _ = holder_and_waiter(instance, pid)
    said = []
    PoolWatch(instance, ["gpu"], say=said.append).check_once()
    assert said == [
        f"Run {holder.run_id[:8]}'s imgcls process (pid {pid}) is gone: "
        "its gpu slot is freed for this run."
    ]
    info = instance.event_log_storage.get_concurrency_info("gpu")
    assert holder.run_id not in {slot.run_id for slot in info.claimed_slots}
    assert instance.get_run_by_id(holder.run_id).status == DagsterRunStatus.FAILURE


def test_training_is_the_step_that_waits_for_the_gpu_pool():
    assert pools_of(defs, ["trained_checkpoint"]) == {"gpu"}
    assert pools_of(defs, ["image_manifest", "splits"]) == set()


def test_a_holder_killed_while_this_run_waits_gives_its_slot_back(instance):
    holder_process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    holder, _ = holder_and_waiter(instance, holder_process.pid)
    said = []
    watch = PoolWatch(instance, ["gpu"], say=said.append)
    watch.check_once()
    assert len(said) == 1 and "freed" not in said[0]
    holder_process.kill()
    holder_process.wait()
    watch.check_once()
    assert said[1] == (
        f"Run {holder.run_id[:8]}'s imgcls process (pid {holder_process.pid}) is gone: "
        "its gpu slot is freed for this run."
    )
    assert instance.get_run_by_id(holder.run_id).status == DagsterRunStatus.FAILURE


def test_train_into_a_locked_checkpoint_folder_is_refused_before_waiting_for_the_pool(tmp_path):
    """With a shared instance the training step waits for the gpu pool, which the run writing
    the folder holds: the refusal must come before the job starts, not after that wait."""
    from imgcls_pipeline.cli.preflight import check_command
    from imgcls_pipeline.core.errors import UserError
    from imgcls_pipeline.core.folders import Folders
    from imgcls_pipeline.core.settings import PipelineConfig

    checkpoints = tmp_path / "checkpoints"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from imgcls_pipeline.core.locks import FolderLock\n"
            "FolderLock(sys.argv[1], 'checkpoint folder').acquire()\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n",
            str(checkpoints),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        folders = Folders(
            data_dir=str(tmp_path / "no-data"),  # later checks would fail on these
            splits_dir=str(tmp_path / "no-splits"),
            checkpoint_dir=str(checkpoints),
            artifacts_dir=str(tmp_path / "artifacts"),
        )
        for command in ("train", "pipeline"):
            with pytest.raises(UserError, match=f"checkpoint folder .*pid {holder.pid} on"):
                check_command(command, PipelineConfig(), folders)
    finally:
        holder.kill()
        holder.wait()

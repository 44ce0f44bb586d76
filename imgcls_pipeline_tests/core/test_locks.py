import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.locks import LOCK_FILE, FolderLock, refuse_if_locked

# A separate process takes the lock, says so on stdout, then sleeps until killed.
HOLDER = """
import sys, time
from imgcls_pipeline.core.locks import FolderLock
FolderLock(sys.argv[1], "checkpoint folder").acquire()
print("locked", flush=True)
time.sleep(600)
"""


def start_holder(folder: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), "--fake-flag"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None and process.stdout.readline() == "locked\n"
    return process


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    holder = start_holder(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(UserError) as refused:
            FolderLock(tmp_path, "checkpoint folder").acquire()
        assert time.monotonic() - started < 1  # at once, no waiting
        message = str(refused.value)
        assert f"checkpoint folder {tmp_path} is in use" in message
        assert f"pid {holder.pid} on {os.uname().nodename}" in message
        assert "--fake-flag" in message and "since 20" in message
        with pytest.raises(UserError, match=f"pid {holder.pid}"):
            refuse_if_locked(tmp_path, "checkpoint folder")
    finally:
        holder.kill()
        holder.wait()


def test_kill_9_of_the_holder_frees_the_lock(tmp_path):
    holder = start_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    refuse_if_locked(tmp_path, "checkpoint folder")  # nothing stale left to refuse with
    with FolderLock(tmp_path, "checkpoint folder"):
        assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_FILE).read_text()


def temp_name(destination: str, pid: int) -> str:
    return f".{destination}.{re.sub(r'[^A-Za-z0-9_-]', '_', socket.gethostname())}-{pid}.x.tmp"


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_holder_removes_temporary_files_of_dead_writers_only(tmp_path):
    dead = temp_name("metrics.csv", dead_pid())
    unlocked_writer = temp_name("manifest.parquet", os.getppid())  # alive, lock or no lock
    for name in (dead, unlocked_writer, ".latest_model.pt.k2j3h4.tmp"):  # the last: older naming
        (tmp_path / name).write_text("partial")
    (tmp_path / "metrics.csv").write_text("epoch\n1\n")
    with FolderLock(tmp_path, "checkpoint folder"):
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted([LOCK_FILE, "metrics.csv", unlocked_writer])


def test_released_lock_can_be_taken_again_in_the_same_process(tmp_path):
    lock = FolderLock(tmp_path / "new", "artifacts folder")
    with lock, pytest.raises(UserError, match="artifacts folder"):
        FolderLock(tmp_path / "new", "artifacts folder").acquire()
    with FolderLock(tmp_path / "new", "artifacts folder"):
        pass


def test_temporary_files_under_another_lock_are_left_to_its_holder(tmp_path):
    pid = dead_pid()
    nested = tmp_path / "embeddings" / temp_name("train.npy", pid)
    nested.parent.mkdir()
    nested.write_text("partial")
    inner_folder = tmp_path / "checkpoints"
    with FolderLock(inner_folder, "checkpoint folder"):
        inner = inner_folder / temp_name("latest_model.pt", pid)
        inner.write_text("its holder's to judge")
        with FolderLock(tmp_path, "artifacts folder"):
            assert not nested.exists()
            assert inner.exists()


def test_a_training_process_names_the_command_that_launched_it(tmp_path):
    holder = start_holder(tmp_path, {"IMGCLS_LAUNCHER_COMMAND": "imgcls train --total_epochs 9"})
    try:
        with pytest.raises(
            UserError, match=f"pid {holder.pid} on .*`imgcls train --total_epochs 9`"
        ):
            refuse_if_locked(tmp_path, "checkpoint folder")
    finally:
        holder.kill()
        holder.wait()


def test_a_forked_child_does_not_keep_the_lock(tmp_path):
    """A DataLoader worker forked while the lock is held must not hold it after the parent lets
    go (or dies): a kill -9 followed by an immediate re-run would be refused for seconds."""
    lock = FolderLock(tmp_path, "artifacts folder")
    lock.acquire()
    started, child_says = os.pipe()
    child = os.fork()
    if child == 0:  # the "worker": outlives its parent's hold on the lock
        os.write(child_says, b"up")  # fork's hooks have run by the time the child's code does
        time.sleep(3)
        os._exit(0)
    try:
        assert os.read(started, 2) == b"up"
        lock.release()
        with FolderLock(tmp_path, "artifacts folder"):  # a new writer gets in at once
            pass
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(started)
        os.close(child_says)

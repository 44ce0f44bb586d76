import os
import signal
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


def start_holder(folder: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), "--fake-flag"],
        stdout=subprocess.PIPE,
        text=True,
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


def test_the_holder_removes_temporary_files_of_dead_writers(tmp_path):
    (tmp_path / ".metrics.csv.host-1.abc.tmp").write_text("partial")
    (tmp_path / "metrics.csv").write_text("epoch\n1\n")
    with FolderLock(tmp_path, "checkpoint folder"):
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, "metrics.csv"]


def test_released_lock_can_be_taken_again_in_the_same_process(tmp_path):
    lock = FolderLock(tmp_path / "new", "artifacts folder")
    with lock, pytest.raises(UserError, match="artifacts folder"):
        FolderLock(tmp_path / "new", "artifacts folder").acquire()
    with FolderLock(tmp_path / "new", "artifacts folder"):
        pass


def test_temporary_files_under_another_lock_are_left_to_its_holder(tmp_path):
    nested = tmp_path / "embeddings" / ".train.npy.h-1.a.tmp"
    nested.parent.mkdir()
    nested.write_text("partial")
    inner_folder = tmp_path / "checkpoints"
    with FolderLock(inner_folder, "checkpoint folder"):
        (inner_folder / ".latest_model.pt.h-2.b.tmp").write_text("being written")
        with FolderLock(tmp_path, "artifacts folder"):
            assert not nested.exists()
            assert (inner_folder / ".latest_model.pt.h-2.b.tmp").exists()

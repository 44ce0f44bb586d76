import os
import subprocess
import sys

import pytest

from imgcls_pipeline.core.atomic import atomic_path, pid_alive, write_text_atomic


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_write_removes_the_temp_files_of_dead_writers_of_that_file_only(tmp_path):
    host = os.uname().nodename.replace(".", "_")
    dead, alive = dead_pid(), os.getpid()
    orphan = tmp_path / f".a.csv.{host}-{dead}.x1.tmp"
    live = tmp_path / f".a.csv.{host}-{alive}.x2.tmp"  # a writer still at work
    other_host = tmp_path / f".a.csv.elsewhere-{dead}.x3.tmp"  # its pid means nothing here
    other_file = tmp_path / f".b.csv.{host}-{dead}.x4.tmp"
    for path in (orphan, live, other_host, other_file):
        path.write_text("partial")
    write_text_atomic(tmp_path / "a.csv", "x\n")
    assert not orphan.exists()
    assert live.exists() and other_host.exists() and other_file.exists()
    assert (tmp_path / "a.csv").read_text() == "x\n"


def test_the_temp_file_names_its_writer(tmp_path):
    with atomic_path(tmp_path / "index.faiss") as temp:
        assert f"-{os.getpid()}." in temp.name and temp.name.startswith(".index.faiss.")


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid())


def test_a_zombie_counts_as_dead():
    if not os.path.isdir("/proc"):
        pytest.skip("needs /proc")
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    assert not pid_alive(zombie.pid)
    zombie.wait()

"""Write user-facing files so that a reader never sees a half-written one.

Each write goes to a temporary file in the destination folder (same filesystem), is flushed to
disk, and then replaces the destination with ``os.replace`` (atomic on POSIX and Windows).

A writer killed mid-write leaves its temporary file, ``.<name>.<host>-<pid>.<random>.tmp``. The
next write of the same file removes those whose process is gone (same host, pid not running), and
a folder's lock holder removes every orphan in the folder (``core.locks``); never one a live writer
may still be using (a live pid, or another host's file, whose pid means nothing here).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # frames are only passed through: `imgcls -h` and fast errors need no pandas
    import pandas as pd


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any thread starts.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()
# Dots would split the name ambiguously; a host name rarely has other odd characters.
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())
_OWNER = re.compile(r"\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[^.]+\.tmp$")


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; on success it replaces the destination."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans_of(destination)
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=destination.parent
    )
    os.close(fd)
    temp = Path(temp_name)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would.
    os.chmod(temp, 0o666 & ~_UMASK)
    try:
        yield temp
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, destination)
    finally:
        temp.unlink(missing_ok=True)


def write_atomic(destination: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    with atomic_path(destination) as temp, open(temp, "wb") as handle:
        write(handle)


def write_text_atomic(destination: str | os.PathLike[str], text: str) -> None:
    write_atomic(destination, lambda handle: handle.write(text.encode("utf-8")))


def write_csv_atomic(destination: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    with atomic_path(destination) as temp:
        frame.to_csv(temp, index=False, encoding="utf-8", lineterminator="\n")


def write_parquet_atomic(destination: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    with atomic_path(destination) as temp:
        frame.to_parquet(temp, index=False)


def is_orphan_temp_file(name: str, *, unnamed_too: bool) -> bool:
    """Whether ``name`` is a temporary file of ours whose writer is gone. ``unnamed_too``: count
    one without a writer in its name (an older version's) as gone: only for a lock holder."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    owner = _OWNER.search(name)
    if owner is None:
        return unnamed_too
    return owner["host"] == _HOST and not pid_alive(int(owner["pid"]))


def _remove_orphans_of(destination: Path) -> None:
    for leftover in destination.parent.glob(f".{glob.escape(destination.name)}.*.tmp"):
        if is_orphan_temp_file(leftover.name, unnamed_too=False):
            leftover.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (not Linux): kill(0) said it exists

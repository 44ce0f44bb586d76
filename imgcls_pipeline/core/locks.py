"""One writer per folder: an exclusive OS lock on a hidden file inside the folder.

``flock`` belongs to the open file, so the kernel drops it when the holder exits in any way,
kill -9 included: a lock is never stale and never needs removing by hand. The lock file itself
stays (deleting it would let two processes lock two different files of the same name); it holds
who has it (pid, host, command, start time) so that a refused writer can say whom it waits for.

A process forked while a lock is held (a DataLoader worker) would share the lock and keep it
for the seconds it takes to notice its parent died: a kill -9 followed by an immediate re-run
would be refused. Forked children therefore drop their copy of every held lock at once
(``os.register_at_fork``); only the process that acquired a lock holds it.

Only a writer on this machine or on a filesystem whose ``flock`` reaches every client (local
disks; NFSv4 does) is kept out; that is where our folders live.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from imgcls_pipeline.core.atomic import is_orphan_temp_file
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.lifeline import LAUNCHER_COMMAND_ENV

LOCK_FILE = ".imgcls.lock"
# The locks this process holds, so that a forked child can let go of its copies.
_held: set[FolderLock] = set()


@dataclass(frozen=True)
class Holder:
    """Who holds a folder's lock, as written into the lock file."""

    pid: int
    host: str
    command: str
    started: str  # ISO 8601, UTC

    @classmethod
    def this_process(cls) -> Holder:
        own = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            command=os.environ.get(LAUNCHER_COMMAND_ENV) or own,
            started=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, `{self.command}`, since {self.started}"


class FolderLock:
    """The exclusive lock of ``folder``; ``acquire`` refuses at once when another process has it.

    Once it has the lock, ``acquire`` removes the temporary files of writers that died in the
    folder (``core.atomic``): with the lock held no other locked writer is alive there.
    """

    def __init__(self, folder: str | os.PathLike[str], purpose: str) -> None:
        self.folder = Path(folder)
        self.purpose = purpose  # e.g. "checkpoint folder", named in the refusal
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(
                busy_message(self.purpose, self.folder, read_holder(self.path))
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(Holder.this_process())).encode("utf-8"), 0)
        self._fd = fd
        _held.add(self)
        remove_temp_files(self.folder)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the lock
            self._fd = None
        _held.discard(self)

    def _forget_in_child(self) -> None:
        """In a forked child: close the inherited descriptor, which leaves the parent's lock
        alone (flock belongs to the open file, and the parent still has it open)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Path:
        self.acquire()
        return self.folder

    def __exit__(self, *_: object) -> None:
        self.release()


def _drop_inherited_locks() -> None:
    for lock in list(_held):
        lock._forget_in_child()
    _held.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


def refuse_if_locked(folder: str | os.PathLike[str], purpose: str) -> None:
    """Raise the busy sentence now when ``folder`` is locked, before slow work starts; the
    writer still takes the lock itself (the holder may change in between)."""
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        # A shared lock for an instant: granted unless a writer holds the exclusive one.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(busy_message(purpose, Path(folder), read_holder(path))) from None
    finally:
        os.close(fd)


def busy_message(purpose: str, folder: Path, holder: Holder | None) -> str:
    who = holder.describe() if holder else "a process that has not written its name yet"
    return (
        f"The {purpose} {folder} is in use by another imgcls run ({who}); "
        f"wait for it to finish or stop it, or give this run another folder."
    )


def read_holder(path: Path) -> Holder | None:
    try:
        return Holder(**json.loads(path.read_text(encoding="utf-8")))
    # Empty or half-written while the holder is between truncate and write.
    except (OSError, ValueError, TypeError):
        return None


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the orphaned temporary files in ``folder`` and below, except in a subfolder with a
    lock of its own (a checkpoint folder kept inside the artifacts folder, say), which is its
    holder's to clean. Only for the holder of ``folder``'s lock. Returns what was deleted."""
    removed = []
    for parent, subfolders, files in os.walk(folder):
        subfolders[:] = [d for d in subfolders if not (Path(parent) / d / LOCK_FILE).exists()]
        for name in files:
            if is_orphan_temp_file(name, unnamed_too=True):
                (Path(parent) / name).unlink(missing_ok=True)
                removed.append(Path(parent) / name)
    return removed

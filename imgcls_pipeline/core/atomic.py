"""Write user-facing files so that a reader never sees a half-written one.

Each write goes to a temporary file in the destination folder (same filesystem), is flushed to
disk, and then replaces the destination with ``os.replace`` (atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pandas as pd


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any thread starts.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; on success it replaces the destination."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
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

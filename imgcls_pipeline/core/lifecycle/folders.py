"""Building a folder so that readers see it complete or not at all: it is written under a hidden
temporary name that says which process builds it, then renamed into place in one step.

A builder killed mid-way leaves its temporary folder behind; the next holder of the parent's lock
removes those whose process is gone (``remove_orphan_folders``), never one a live process builds.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import tempfile
from pathlib import Path

from imgcls_pipeline.core.atomic import is_orphan_temp_file, pid_alive

# The name's owner part is spelled as core.atomic spells it for temporary files
# (.<name>.<host>-<pid>.<random>.tmp), so that is_orphan_temp_file reads it.
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())


def this_builder() -> str:
    """``<host>-<pid>`` of this process, as recorded by a bundle it builds."""
    return f"{_HOST}-{os.getpid()}"


def builder_alive(builder: str) -> bool:
    """Whether the process ``this_builder`` named may still use what it built: alive on this
    host, or on another host (whose pid means nothing here)."""
    host, _, pid = builder.rpartition("-")
    if not host or not pid.isdigit():
        return False
    return host != _HOST or pid_alive(int(pid))


def temp_name(name: str) -> str:
    """A hidden name for a temporary ``name`` of this process (a symlink made before a rename)."""
    return f".{name}.{_HOST}-{os.getpid()}.{secrets.token_hex(4)}.tmp"


def temp_folder(parent: Path, name: str) -> Path:
    """A new empty hidden folder in ``parent`` whose name records this process."""
    parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{name}.{_HOST}-{os.getpid()}."
    return Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))


def is_temp_folder(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def remove_orphan_folders(parent: Path) -> list[Path]:
    """Delete the temporary folders in ``parent`` whose builder is gone; only for a process
    holding ``parent``'s lock. Returns what was deleted."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        if entry.is_symlink() or not entry.is_dir() or not is_temp_folder(entry):
            continue
        if is_orphan_temp_file(entry.name, unnamed_too=True):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed

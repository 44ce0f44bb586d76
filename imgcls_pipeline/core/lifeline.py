"""A child process that dies with its parent, however the parent dies (kill -9 included).

The launcher names itself in ``IMGCLS_PARENT_PID``; the child calls ``follow_parent`` first thing.
On Linux that asks the kernel for SIGKILL when the parent exits (``PR_SET_PDEATHSIG``), then
checks the parent is still the one named: had it died before the request, the child was already
handed to another process and would never get the signal. SIGKILL, not SIGTERM: nobody is left to
report a clean stop to, and every file is written atomically, so a kill loses at most the epoch
in progress. Elsewhere (no prctl) it does nothing.

A chain (orchestrator -> torchrun -> workers) is covered link by link: ``python -m
imgcls_pipeline.core.lifeline CMD...`` follows its parent, names itself as the parent of what it
starts, and becomes CMD (exec keeps the pid and the death signal).
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import sys
from pathlib import Path

PARENT_ENV = "IMGCLS_PARENT_PID"
# The command the user started (`imgcls train …`), which a child names as its own where it
# reports who it is (the holder of a folder lock): the child's own arguments mean little to a user.
LAUNCHER_COMMAND_ENV = "IMGCLS_LAUNCHER_COMMAND"
_PR_SET_PDEATHSIG = 1


def child_env() -> dict[str, str]:
    """The environment a launcher gives a child that must die with it."""
    command = os.environ.get(LAUNCHER_COMMAND_ENV) or shlex.join(
        [Path(sys.argv[0]).name, *sys.argv[1:]]
    )
    return {PARENT_ENV: str(os.getpid()), LAUNCHER_COMMAND_ENV: command}


def follow_parent() -> None:
    """Die with the parent named in ``IMGCLS_PARENT_PID``; nothing when it is not set."""
    expected = os.environ.get(PARENT_ENV)
    if not expected or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # refused (e.g. by seccomp): run unguarded rather than not at all
    if os.getppid() != int(expected):
        os._exit(1)  # the parent is gone already; no signal would ever come


def main(argv: list[str]) -> None:
    follow_parent()
    os.environ[PARENT_ENV] = str(os.getpid())  # the pid CMD will have: exec keeps it
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])

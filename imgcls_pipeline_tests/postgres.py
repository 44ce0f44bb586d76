"""A throwaway PostgreSQL server for a test: its own cluster in a temp folder, on a free port.

Debian's ``postgresql`` package (``.ci/run`` installs it) provides the server binaries. The
server refuses to run as root, so as root it runs as the ``postgres`` user, in a folder that user
owns; it listens on 127.0.0.1 only and trusts local connections (nothing else can reach it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imgcls_pipeline_tests.servers import free_port

SERVER_USER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    database: str


def server_binaries() -> Path | None:
    """The folder with initdb and pg_ctl (newest version installed), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _version(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def missing_reason() -> str | None:
    """Why no server can be started here (None: one can)."""
    if server_binaries() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install -y postgresql"
    if os.geteuid() == 0 and not _user_exists(SERVER_USER):
        return f"running as root and there is no '{SERVER_USER}' user to run the server as"
    return None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a fresh cluster, yield how to reach it, stop it and delete it."""
    binaries = server_binaries()
    assert binaries is not None, missing_reason()
    as_root = os.geteuid() == 0
    # Under /tmp, not pytest's tmp_path: that is private to root, so the server user could not
    # reach a folder inside it.
    folder = Path(tempfile.mkdtemp(prefix="imgcls-postgres-"))
    data = folder / "data"
    data.mkdir()
    if as_root:
        owner = pwd.getpwnam(SERVER_USER)
        for path in (folder, data):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()

    def run(*command: str) -> None:
        prefix = ["runuser", "-u", SERVER_USER, "--"] if as_root else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, text=True, timeout=60)

    superuser = SERVER_USER if as_root else pwd.getpwuid(os.geteuid()).pw_name
    try:
        run(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", superuser, "--no-sync")
        options = (
            f"-p {port} -k {folder} -h 127.0.0.1 -F"  # -F: no fsync, a test's data is disposable
        )
        run(
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "log"),
            "-w",
            "start",
        )
        try:
            yield PostgresServer("127.0.0.1", port, superuser, "postgres")
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)

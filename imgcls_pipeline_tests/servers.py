"""Starting a `dagster dev` server from a test: a free port, and signals it can be stopped by."""

import signal
import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def restore_signals() -> None:
    # A non-interactive parent leaves SIGINT ignored; dagster dev must be stoppable.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

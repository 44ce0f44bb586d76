"""Run pipeline commands in forked children and kill -9 them at given moments (the crash test).

    python -m imgcls_pipeline_tests.crash_driver LOGFILE

Reads one JSON request per line on stdin, ``{"entry": "imgcls" | "train_script", "argv": [...],
"kill_after": seconds or null}``, and answers one JSON line per request: ``{"killed": bool,
"code": exit code, "seconds": float}``. The pipeline is imported once, here; each child is a fork,
so a run costs its own work and not the ~10 s of importing torch, timm, faiss and Dagster again:
ten kills per command fit in the test's time. The children write their output to LOGFILE.

This process itself runs no tensor operation: a fork taken after OpenMP threads started could
hang in the child.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
import warnings

import imgcls_pipeline.cli as cli
import imgcls_pipeline.cli.predict
import imgcls_pipeline.cli.promote
import imgcls_pipeline.core.lifecycle.gate
import imgcls_pipeline.core.search.evaluation
import imgcls_pipeline.core.search.index
import imgcls_pipeline.core.search.inference
import imgcls_pipeline.core.search.report
import imgcls_pipeline.core.search.rerank  # noqa: F401
import imgcls_pipeline.train_script as train_script

ENTRIES = {"imgcls": cli.main, "train_script": train_script.main}
# Python warns on any fork with a second OS thread; ours are idle native ones (torch's and
# jemalloc's background threads), which hold no lock a child would need.
warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork\\(\\) may lead")


def run_child(entry: str, argv: list[str], log_fd: int) -> None:
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    code = 4
    try:
        code = ENTRIES[entry](argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(log_path: str) -> None:
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for line in sys.stdin:
        request = json.loads(line)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            run_child(request["entry"], request["argv"], log_fd)
        kill_after = request["kill_after"]
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if kill_after is not None and time.monotonic() - started >= kill_after:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.002)
        answer = {
            # Not when the child had exited by itself just before the signal.
            "killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
            "code": os.waitstatus_to_exitcode(status),
            "seconds": time.monotonic() - started,
        }
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    serve(sys.argv[1])

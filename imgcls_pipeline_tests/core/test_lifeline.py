import os
import signal
import subprocess
import sys
import time

import pytest

from imgcls_pipeline.core.atomic import pid_alive

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")

# The parent starts a child as the training asset starts training: IMGCLS_PARENT_PID set and the
# child following it first thing. In the "chain" case the child is a launcher started through the
# lifeline module (as torchrun is) whose own child (a worker) follows it.
WORKER = (
    "from imgcls_pipeline.core import lifeline; lifeline.follow_parent(); "
    "import time; time.sleep(600)"
)
LAUNCHER = f"""
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", {WORKER!r}])
print(worker.pid, flush=True)
time.sleep(600)
"""
PARENT = f"""
import os, subprocess, sys, time
from imgcls_pipeline.core import lifeline
if sys.argv[1] == "chain":
    command = [sys.executable, "-m", "imgcls_pipeline.core.lifeline", sys.executable, "-c", {LAUNCHER!r}]
else:
    command = [sys.executable, "-c", {WORKER!r}]
child = subprocess.Popen(command, env={{**os.environ, **lifeline.child_env()}})
print(child.pid, flush=True)
time.sleep(600)
"""


def wait_until_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("launch", ["direct", "chain"])
def test_the_child_dies_within_seconds_of_a_kill_9_of_its_parent(launch):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, launch], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    children = [int(parent.stdout.readline())]
    if launch == "chain":
        children.append(int(parent.stdout.readline()))  # the launcher's worker prints through
    try:
        time.sleep(1.5)  # every child is past follow_parent
        assert all(pid_alive(child) for child in children)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert all(wait_until_gone(child, 5) for child in children)
    finally:
        for child in children:
            if pid_alive(child):
                os.kill(child, signal.SIGKILL)


def test_a_child_whose_parent_is_already_gone_exits_at_once():
    env = {**os.environ, "IMGCLS_PARENT_PID": "1" if os.getppid() != 1 else "2"}
    code = "from imgcls_pipeline.core import lifeline; lifeline.follow_parent(); print('ran')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "ran" not in done.stdout

"""The training process against a second writer, a killed parent, a changed setting on resume and
a broken best_model.pt."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from imgcls_pipeline.core.atomic import pid_alive
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.locks import FolderLock
from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline_tests.core.training.test_train_script import (
    REPO,
    finish,
    script_args,
    start,
    wait_for,
)
from imgcls_pipeline_tests.core.training.tiny_training import make_tiny_splits, tiny_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_splits(tmp_path_factory.mktemp("tiny"))


@pytest.mark.slow
def test_a_second_training_into_the_same_folder_refuses_naming_the_first(tiny, tmp_path):
    # No early stopping: the tiny run reaches R@1 = 1 at once and would end after 11 epochs, a few
    # seconds, before the second process has even imported torch on a busy machine.
    running = tiny_config(total_epochs=500, early_stopping_patience=0)
    first = start(script_args(tiny, tmp_path / "one", running))
    try:
        checkpoints = tmp_path / "one" / "checkpoints"
        wait_for(checkpoints / ckpt.LATEST, first)
        second_args = script_args(tiny, tmp_path / "two", tiny_config(learning_rate=0.005))
        second_args[second_args.index("--checkpoint-dir") + 1] = str(checkpoints)
        code, _, err = finish(start(second_args))
        assert code == 1
        message = err.strip().splitlines()[-1]
        assert message.startswith(f"error: The checkpoint folder {checkpoints} is in use")
        assert f"pid {first.pid} on " in message and "train_script" in message
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        first.kill()
        first.wait()


# Starts training as the training asset does (IMGCLS_PARENT_PID = this launcher), then sleeps.
LAUNCHER = """
import os, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-m", "imgcls_pipeline.train_script", *sys.argv[1:]],
    env={**os.environ, "IMGCLS_PARENT_PID": str(os.getpid())},
)
print(child.pid, flush=True)
time.sleep(600)
"""


def lock_is_held(folder) -> bool:
    try:
        with FolderLock(folder, "checkpoint folder"):
            return False
    except UserError:
        return True


@pytest.mark.slow
def test_kill_9_of_the_launcher_stops_training_within_seconds(tiny, tmp_path):
    args = script_args(tiny, tmp_path, tiny_config(total_epochs=500))
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *args], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert launcher.stdout is not None
    trainer = int(launcher.stdout.readline())
    checkpoints = tmp_path / "checkpoints"
    try:
        deadline = time.monotonic() + 120
        while not (checkpoints / ckpt.LATEST).exists():
            assert time.monotonic() < deadline and pid_alive(trainer)
            time.sleep(0.05)
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        killed = time.monotonic()
        while pid_alive(trainer) or lock_is_held(checkpoints):
            assert time.monotonic() - killed < 5, "the training outlived its launcher"
            time.sleep(0.05)
        ckpt.read_checkpoint(checkpoints / ckpt.LATEST)
    finally:
        if pid_alive(trainer):
            os.kill(trainer, signal.SIGKILL)


@pytest.mark.slow
def test_resume_refuses_changed_settings_and_checks_best_model(tiny, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    code, _, err = finish(start(script_args(tiny, tmp_path, tiny_config())))
    assert code == 0, err

    # --learning_rate used to be dropped silently on resume; more epochs are a legitimate change.
    changed = tiny_config(total_epochs=3, learning_rate=0.005)
    code, _, err = finish(start(script_args(tiny, tmp_path, changed)))
    assert code == 1
    assert "learning_rate differs (0.001 -> 0.005)" in err and "total_epochs" not in err
    assert ckpt.read_checkpoint(checkpoints / ckpt.LATEST)["epoch"] == 2  # untouched

    best = checkpoints / ckpt.BEST
    best.write_bytes(best.read_bytes()[:1000])  # truncated, as by a full disk
    latest = torch.load(checkpoints / ckpt.LATEST, weights_only=True)
    code, out, err = finish(start(script_args(tiny, tmp_path, tiny_config())))
    if latest["best_epoch"] == latest["epoch"]:  # the same weights: rebuilt, and said so
        assert code == 0 and "was unreadable; rebuilt it" in out
        assert ckpt.read_checkpoint(best)["epoch"] == latest["epoch"]
    else:  # the best weights are gone: never printed as the best model
        assert code == 1 and "best_model.pt is missing or unreadable" in err and "--fresh" in err

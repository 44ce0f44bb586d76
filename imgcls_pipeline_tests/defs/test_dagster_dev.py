"""`dagster dev` as a user runs it: the UI server loads the code, runs the data assets, and keeps
the run history across a restart (DAGSTER_HOME=$PWD with the project's dagster.yaml)."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from imgcls_pipeline_tests.imaging import make_photo_folder, uniform_layout
from imgcls_pipeline_tests.servers import free_port, restore_signals

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path) -> Path:
    """A project folder as a user has it: dagster.yaml, workspace.yaml and photos in data/."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    make_photo_folder(root / "data", uniform_layout(2, 4, 2))
    return root


class DagsterDev:
    def __init__(self, root: Path):
        # As the README says: `export DAGSTER_HOME=$PWD` in the project folder.
        self.root, self.port = root, free_port()
        self.env = os.environ | {"DAGSTER_HOME": str(root)}
        self.process: subprocess.Popen | None = None

    def start(self) -> DagsterGraphQLClient:
        command = [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        self.process = subprocess.Popen(
            command,
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "dagster_dev.log", "ab"),  # noqa: SIM115
            start_new_session=True,
            preexec_fn=restore_signals,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/server_info", timeout=2)
                return DagsterGraphQLClient("127.0.0.1", port_number=self.port)
            except OSError:
                assert self.process.poll() is None, (self.root / "dagster_dev.log").read_text()
                time.sleep(1)
        raise TimeoutError("dagster dev did not answer in 120 s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # code servers left behind


def _wait_for(client: DagsterGraphQLClient, run_id: str) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(2)
    raise TimeoutError(run_id)


@pytest.mark.slow
def test_ui_server_runs_assets_and_keeps_history_across_restart(tmp_path: Path) -> None:
    root = _project(tmp_path)
    server = DagsterDev(root)
    try:
        client = server.start()
        run_id = client.submit_job_execution(
            "__ASSET_JOB",
            run_config={"ops": {"id_groups": {"config": {"min_image_size": 32}}}},
            asset_selection=[["image_manifest"], ["id_groups"], ["splits"]],
        )
        assert _wait_for(client, run_id) == "SUCCESS"
        assert (root / "splits" / "train.csv").is_file()  # default ./splits, relative to the UI
        server.stop()

        client = server.start()
        try:
            assert client.get_run_status(run_id).value == "SUCCESS"
        except DagsterGraphQLClientError as error:
            pytest.fail(f"run history lost across the restart: {error}")
    finally:
        server.stop()


TINY_TRAINING = {
    "backbone": "test_efficientnet",
    "pretrained": False,
    "image_size": 64,
    "embedding_dim": 16,
    "warmup_epochs": 1,
    "total_epochs": 500,
    "samples_per_class": 4,
    "num_workers": 0,
}


@pytest.mark.slow
def test_terminating_a_training_run_keeps_the_last_epoch(tmp_path: Path) -> None:
    import torch

    root = _project(tmp_path)
    server = DagsterDev(root)
    try:
        client = server.start()
        run_id = client.submit_job_execution(
            "__ASSET_JOB",
            run_config={
                "ops": {
                    "id_groups": {"config": {"min_image_size": 32}},
                    "trained_checkpoint": {"config": TINY_TRAINING},
                }
            },
            asset_selection=[["image_manifest"], ["id_groups"], ["splits"], ["trained_checkpoint"]],
        )
        latest = root / "checkpoints" / "latest_model.pt"
        deadline = time.monotonic() + 180
        while not latest.exists():
            assert time.monotonic() < deadline, "training never wrote a checkpoint"
            assert client.get_run_status(run_id).value not in ("FAILURE", "SUCCESS")
            time.sleep(1)
        client.terminate_run(run_id)
        assert _wait_for(client, run_id) == "CANCELED"
        saved = torch.load(latest, weights_only=True)
        assert 1 <= saved["epoch"] < 500  # stopped early, with completed epochs kept
        history = (root / "checkpoints" / "metrics.csv").read_text().strip().splitlines()
        assert len(history) == saved["epoch"] + 1  # header + one row per completed epoch
    finally:
        server.stop()

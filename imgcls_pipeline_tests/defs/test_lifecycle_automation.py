"""Both automation tracks on a served tiny model, driven through Dagster's own test APIs
(``build_sensor_context``, ``build_schedule_context``, ``execute_in_process``) and once end to
end under ``dagster-daemon``: new photos of a new class become answerable without a training
run, and the schedule asks for a re-training only once the data changed."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from imgcls_pipeline.cli import main
from imgcls_pipeline.core.data.example_data import make_example_dataset
from imgcls_pipeline.core.lifecycle.bundle_files import served_bundle
from imgcls_pipeline.core.lifecycle.registry import list_versions
from imgcls_pipeline.core.settings import LifecycleSettings
from imgcls_pipeline.definitions import defs
from imgcls_pipeline.defs import automation, retrain_schedule
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline_tests.defs.test_lifecycle_gate import GOOD, TINY, dagster_home, folders
from imgcls_pipeline_tests.servers import restore_signals

pytestmark = pytest.mark.slow

DEFINITIONS = "imgcls_pipeline.definitions"
LATE_CLASSES = ("triangle", "star")  # held back, then copied in as new photos


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Path]:
    """A project folder (DAGSTER_HOME) whose served model never saw the late classes."""
    root = tmp_path_factory.mktemp("automation")
    make_example_dataset(root / "all", ids_per_class=4, photos_per_id=2, size=64)
    for shape in (root / "all").iterdir():
        if shape.name not in LATE_CLASSES:
            shutil.copytree(shape, root / "data" / shape.name)
    with dagster_home(root):
        argv = ["pipeline", *folders(root), *TINY, *GOOD, "--min_image_size=32"]
        assert main(argv) == 0
    yield root


def _paths(root: Path) -> PipelinePaths:
    return PipelinePaths.from_env(
        **{f"{name}_dir": str(root / name) for name in ("data", "splits", "artifacts", "models")},
        checkpoint_dir=str(root / "checkpoint"),
    )


def _gallery_classes(root: Path) -> set[str]:
    bundle = served_bundle(root / "artifacts")
    assert bundle is not None
    return set(pd.read_csv(bundle.folder / "index" / "gallery.csv")["class_name"])


def _schedule_tick(instance: dg.DagsterInstance, root: Path):
    context = dg.build_schedule_context(instance=instance, resources={"paths": _paths(root)})
    return retrain_schedule.retrain_schedule(context)


def test_new_class_becomes_answerable_without_training_and_the_schedule_notices(
    project: Path, monkeypatch
) -> None:
    monkeypatch.setattr(
        automation, "lifecycle_settings", lambda: LifecycleSettings(settle_minutes=0)
    )
    paths = _paths(project)
    served_before = served_bundle(project / "artifacts")
    assert served_before is not None and served_before.model_version == "v0001"
    with dg.DagsterInstance.from_config(str(project)) as instance:
        skip = _schedule_tick(instance, project)
        assert isinstance(skip, dg.SkipReason) and "unchanged since v0001" in skip.skip_message
        sensor = dg.build_sensor_context(instance=instance, resources={"paths": paths})
        assert "No change" in automation.new_photos_sensor(sensor).skip_message

        shutil.copytree(project / "all" / "triangle", project / "data" / "triangle")
        sensor = dg.build_sensor_context(instance=instance, resources={"paths": paths})
        request = automation.new_photos_sensor(sensor)
        assert isinstance(request, dg.RunRequest)
        run_config = {
            "ops": {"id_groups": {"config": {"min_image_size": 32}}},  # imgcls.yaml's, for a user
            "resources": {"paths": {"config": paths.model_dump()}},
        }
        result = defs.resolve_job_def("index_new_photos").execute_in_process(
            run_config=run_config, instance=instance, tags=request.tags
        )
        assert result.success
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
        reused = [m for m in messages if m.startswith("train: ") and "rows reused" in m]
        assert reused and not reused[0].startswith("train: 0 rows reused")  # only new embedded
        trained = instance.get_latest_materialization_event(dg.AssetKey("trained_checkpoint"))
        assert trained is not None and trained.run_id != result.run_id  # no training run

        served = served_bundle(project / "artifacts")
        assert served is not None and served.model_version == "v0001"
        assert served.bundle_id != served_before.bundle_id
        assert "triangle" in _gallery_classes(project)
        assert [v.version for v in list_versions(project / "models")] == ["v0001"]

        request = _schedule_tick(instance, project)
        assert isinstance(request, dg.RunRequest)
        assert "triangle" in request.tags["imgcls/retrain_reason"]
        training = request.run_config["ops"]["trained_checkpoint"]["config"]
        assert training["fresh"] is True and training.get("pretrained_path") is None
        monkeypatch.setattr(
            retrain_schedule, "lifecycle_settings", lambda: LifecycleSettings(init_from="served")
        )
        training = _schedule_tick(instance, project).run_config["ops"]["trained_checkpoint"]
        assert training["config"]["pretrained_path"] == str(project / "models/v0001/model.pt")

    gallery = pd.read_csv(served.folder / "index" / "gallery.csv")
    photo = project / "data" / gallery.loc[gallery.class_name == "triangle", "image_path"].iloc[0]
    output = project / "predictions.csv"
    argv = ["predict", f"--artifacts_dir={project / 'artifacts'}"]
    argv += [f"--models_dir={project / 'models'}", "--output", str(output), str(photo)]
    assert main(argv) == 0
    assert pd.read_csv(output)["predicted_class"].tolist() == ["triangle"]  # itself is nearest


def test_dagster_daemon_indexes_new_photos_on_its_own(project: Path) -> None:
    (project / "imgcls.yaml").write_text("settle_minutes: 0\nmin_image_size: 32\n")
    shutil.copytree(project / "all" / "star", project / "data" / "star")
    env = os.environ | {"DAGSTER_HOME": str(project)}
    env |= {f"IMGCLS_{name.upper()}_DIR": str(project / name) for name in ("data", "splits")}
    env |= {f"IMGCLS_{name.upper()}_DIR": str(project / name) for name in ("artifacts", "models")}
    env["IMGCLS_CHECKPOINT_DIR"] = str(project / "checkpoint")
    log = project / "daemon.log"
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", DEFINITIONS],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),  # noqa: SIM115
        start_new_session=True,
        preexec_fn=restore_signals,
    )
    try:
        run = wait_for_sensor_run(project, daemon, log)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGKILL)  # its code server, in the session it started
    assert run.job_name == "index_new_photos" and run.status == dg.DagsterRunStatus.SUCCESS
    assert "star" in _gallery_classes(project)
    assert [v.version for v in list_versions(project / "models")] == ["v0001"]


def wait_for_sensor_run(project: Path, daemon: subprocess.Popen, log: Path) -> dg.DagsterRun:
    """The first run the daemon's new_photos_sensor started, once it has finished."""
    deadline = time.monotonic() + 120
    with dg.DagsterInstance.from_config(str(project)) as instance:
        while time.monotonic() < deadline:
            assert daemon.poll() is None, log.read_text()[-3000:]
            runs = instance.get_runs(
                dg.RunsFilter(
                    tags={"dagster/sensor_name": "new_photos_sensor"},
                    statuses=[
                        dg.DagsterRunStatus.SUCCESS,
                        dg.DagsterRunStatus.FAILURE,
                        dg.DagsterRunStatus.CANCELED,
                    ],
                )
            )
            if runs:
                return runs[0]
            time.sleep(2)
    raise AssertionError(f"no finished sensor run within 120 s: {log.read_text()[-3000:]}")

"""Both automation tracks on a served tiny model, driven through Dagster's own test APIs
(``build_sensor_context``, ``build_schedule_context``, ``execute_in_process``) and once end to
end under ``dagster-daemon``: new photos of a new class become answerable without a training
run, and the schedule asks for a re-training only once the data changed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
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
from imgcls_pipeline_tests.defs.test_lifecycle_gate import GOOD, TINY, folders
from imgcls_pipeline_tests.servers import restore_signals

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = "imgcls_pipeline.definitions"
LATE_CLASSES = ("triangle", "star")  # held back, then copied in as new photos


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder (DAGSTER_HOME) whose served model never saw the late classes."""
    root = tmp_path_factory.mktemp("automation")
    shutil.copy(PROJECT_ROOT / "dagster.yaml", root / "dagster.yaml")
    make_example_dataset(root / "all", ids_per_class=4, photos_per_id=2, size=64)
    for shape in (root / "all").iterdir():
        if shape.name not in LATE_CLASSES:
            shutil.copytree(shape, root / "data" / shape.name)
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(root)
    try:
        assert main(["pipeline", *folders(root), *TINY, *GOOD]) == 0
    finally:
        os.environ.pop("DAGSTER_HOME") if saved is None else os.environ.update(DAGSTER_HOME=saved)
    return root


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
        run_config = {"resources": {"paths": {"config": paths.model_dump()}}}
        result = defs.resolve_job_def("index_new_photos").execute_in_process(
            run_config=run_config, instance=instance, tags=request.tags
        )
        assert result.success
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
        assert request.run_config["ops"]["trained_checkpoint"]["config"]["fresh"] is True

    gallery = pd.read_csv(served.folder / "index" / "gallery.csv")
    photo = project / "data" / gallery.loc[gallery.class_name == "triangle", "image_path"].iloc[0]
    output = project / "predictions.csv"
    argv = ["predict", f"--artifacts_dir={project / 'artifacts'}"]
    argv += [f"--models_dir={project / 'models'}", "--output", str(output), str(photo)]
    assert main(argv) == 0
    assert pd.read_csv(output)["predicted_class"].tolist() == ["triangle"]  # itself is nearest


def test_dagster_daemon_indexes_new_photos_on_its_own(project: Path) -> None:
    (project / "imgcls.yaml").write_text("settle_minutes: 0\n")
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
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "star" not in _gallery_classes(project):
            assert daemon.poll() is None, log.read_text()[-3000:]
            time.sleep(2)
        assert "star" in _gallery_classes(project), log.read_text()[-3000:]
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
    with dg.DagsterInstance.from_config(str(project)) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "new_photos_sensor"}))
        assert [run.job_name for run in runs] == ["index_new_photos"]

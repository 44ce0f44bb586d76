"""The new-photos sensor's settle window and the automation's definitions, through Dagster's own
test APIs (``build_sensor_context``); the whole track on a trained model is in
``test_lifecycle_automation``."""

from pathlib import Path

import dagster as dg
import pytest

from imgcls_pipeline.core.settings import LifecycleSettings
from imgcls_pipeline.definitions import defs
from imgcls_pipeline.defs import automation
from imgcls_pipeline.defs.data_assets import image_manifest
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline_tests.imaging import make_photo_folder, uniform_layout, write_photo


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(automation.time, "time", clock)
    monkeypatch.setattr(
        automation, "lifecycle_settings", lambda: LifecycleSettings(settle_minutes=10)
    )
    return clock


def _paths(tmp_path: Path, data: Path) -> PipelinePaths:
    return PipelinePaths.from_env(
        data_dir=str(data),
        splits_dir=str(tmp_path / "splits"),
        artifacts_dir=str(tmp_path / "artifacts"),
        checkpoint_dir=str(tmp_path / "ckpt"),
        models_dir=str(tmp_path / "models"),
    )


class Sensor:
    """Ticks of new_photos_sensor that carry the cursor from one to the next, as the daemon does."""

    def __init__(self, instance: dg.DagsterInstance, paths: PipelinePaths) -> None:
        self.instance, self.paths, self.cursor = instance, paths, None

    def tick(self) -> dg.RunRequest | dg.SkipReason:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"paths": self.paths}
        )
        result = automation.new_photos_sensor(context)
        self.cursor = context.cursor
        return result


def test_settle_window_holds_back_a_run_while_photos_are_still_arriving(
    tmp_path: Path, clock: Clock, monkeypatch
) -> None:
    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 3, 1))
    paths = _paths(tmp_path, data)
    with dg.instance_for_test() as instance:
        assert dg.materialize([image_manifest], resources={"paths": paths}, instance=instance)
        sensor = Sensor(instance, paths)
        assert "No change" in sensor.tick().skip_message

        write_photo(data / "class_0" / "newid_1.jpg")  # a copy starts
        assert "10.0 min to go" in sensor.tick().skip_message
        clock.now += 5 * 60
        write_photo(data / "class_0" / "newid_2.jpg", seed=2)  # still copying: the wait restarts
        assert "10.0 min to go" in sensor.tick().skip_message
        clock.now += 9 * 60
        assert "1.0 min to go" in sensor.tick().skip_message

        clock.now += 60  # ten quiet minutes, but nothing is served to index the photos with
        assert "no model is served yet" in sensor.tick().skip_message
        monkeypatch.setattr(automation, "served_bundle", lambda artifacts: object())
        request = sensor.tick()
        assert isinstance(request, dg.RunRequest)
        assert request.job_name in (None, "index_new_photos")
        assert request.tags["imgcls/trigger"] == "new_photos"


def test_new_photos_job_indexes_without_training() -> None:
    job = defs.resolve_job_def("index_new_photos")
    planned = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert {"image_manifest", "splits", "embeddings", "faiss_index", "evaluation"} <= planned
    assert not planned & {"trained_checkpoint", "model_version", "served_model"}


def test_only_the_cheap_track_is_on_by_default() -> None:
    sensor = defs.resolve_sensor_def("new_photos_sensor")
    schedule = defs.resolve_schedule_def("retrain_schedule")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == LifecycleSettings().retrain_cron
    retrain = defs.resolve_job_def(schedule.job_name)
    planned = {key.to_user_string() for key in retrain.asset_layer.executable_asset_keys}
    assert {"trained_checkpoint", "model_version", "served_model", "faiss_index"} <= planned


def test_retraining_reuses_the_settings_of_the_current_model() -> None:
    from imgcls_pipeline.defs.retrain_schedule import retrain_run_config

    with dg.instance_for_test() as instance:
        assert retrain_run_config(instance) == {
            "ops": {"trained_checkpoint": {"config": {"fresh": True}}}
        }
        settings = {"backbone": "tf_efficientnetv2_s", "image_size": 384, "fresh": False}

        @dg.asset(name="trained_checkpoint")
        def fake_training(config: dg.PermissiveConfig) -> None:
            return None

        dg.materialize(
            [fake_training],
            instance=instance,
            run_config={"ops": {"trained_checkpoint": {"config": settings}}},
        )
        config = retrain_run_config(instance)["ops"]["trained_checkpoint"]["config"]
        assert config == {"backbone": "tf_efficientnetv2_s", "image_size": 384, "fresh": True}

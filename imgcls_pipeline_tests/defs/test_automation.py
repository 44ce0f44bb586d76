from pathlib import Path

import dagster as dg

from imgcls_pipeline.definitions import defs
from imgcls_pipeline.defs.automation import new_photos_sensor
from imgcls_pipeline.defs.data_assets import image_manifest
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline_tests.imaging import make_photo_folder, uniform_layout, write_photo


def _tick(instance: dg.DagsterInstance, paths: PipelinePaths):
    context = dg.build_sensor_context(instance=instance, resources={"paths": paths})
    return new_photos_sensor(context)


def test_sensor_requests_a_run_only_when_photos_changed(tmp_path: Path) -> None:
    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 3, 1))
    paths = PipelinePaths.from_env(
        data_dir=str(data),
        splits_dir=str(tmp_path / "splits"),
        artifacts_dir=str(tmp_path / "artifacts"),
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    with dg.instance_for_test() as instance:
        assert isinstance(_tick(instance, paths), dg.RunRequest)  # never scanned yet

        result = dg.materialize([image_manifest], resources={"paths": paths}, instance=instance)
        assert result.success
        assert isinstance(_tick(instance, paths), dg.SkipReason)

        write_photo(data / "class_0" / "newid_1.jpg")
        request = _tick(instance, paths)
        assert isinstance(request, dg.RunRequest)
        assert request.tags["imgcls/trigger"] == "new_photos"
        assert request.run_config["ops"]["trained_checkpoint"]["config"]["fresh"] is True


def test_retrain_job_covers_the_whole_graph() -> None:
    job = defs.resolve_job_def("retrain_on_new_photos")
    planned = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert {"image_manifest", "id_groups", "splits"} <= planned


def test_retraining_reuses_the_settings_of_the_current_model(tmp_path: Path) -> None:
    from imgcls_pipeline.defs.automation import retrain_run_config

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

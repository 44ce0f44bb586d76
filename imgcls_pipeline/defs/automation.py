"""Re-training when new photos arrive: a sensor that compares the photo folder with the last scan."""

import dagster as dg

from imgcls_pipeline.core.data.manifest import folder_fingerprint
from imgcls_pipeline.defs.data_assets import FINGERPRINT_KEY
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline.defs.run_config import ASSET_CONFIGS

# Everything downstream of the photo folder: scan, split, train, embed, index, evaluate.
retrain_job = dg.define_asset_job(
    "retrain_on_new_photos",
    selection=dg.AssetSelection.all(),
    description="Re-scan the photo folder and rebuild everything downstream of it.",
)

CHECK_EVERY_SECONDS = 60 * 60


def retrain_run_config(instance: dg.DagsterInstance) -> dict:
    """The settings of the run that produced the current model (backbone, image size, class
    names, ...), so a scheduled re-training trains the same way; plus ``fresh``, because new
    photos change train.csv and a checkpoint is never resumed against other splits. Settings that
    run left to its defaults take the project's imgcls.yaml (the run config classes' defaults),
    and the photo folder is the ``paths`` resource's, read from the same file."""
    ops: dict = {}
    event = instance.get_latest_materialization_event(dg.AssetKey("trained_checkpoint"))
    run = instance.get_run_by_id(event.run_id) if event is not None else None
    if run is not None:
        previous_ops = (run.run_config or {}).get("ops", {})
        ops = {name: previous_ops[name] for name in ASSET_CONFIGS if name in previous_ops}
    training = dict(ops.get("trained_checkpoint", {}).get("config", {}))
    ops["trained_checkpoint"] = {"config": {**training, "fresh": True}}
    return {"ops": ops}


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=CHECK_EVERY_SECONDS,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Hourly: when photos were added, removed or changed since the last "
    "image_manifest scan, run the whole pipeline again (existing IDs keep their split). "
    "Turn it on in the UI (Automation) to enable scheduled re-training.",
)
def new_photos_sensor(
    context: dg.SensorEvaluationContext, paths: PipelinePaths
) -> dg.RunRequest | dg.SkipReason:
    current = folder_fingerprint(paths.data)
    event = context.instance.get_latest_materialization_event(dg.AssetKey("image_manifest"))
    scanned = None
    if event is not None and event.asset_materialization is not None:
        value = event.asset_materialization.metadata.get(FINGERPRINT_KEY)
        scanned = getattr(value, "value", value)
    if current == scanned:
        return dg.SkipReason(f"No change in {paths.data} since the last scan ({current}).")
    return dg.RunRequest(
        run_key=current,
        run_config=retrain_run_config(context.instance),
        tags={"imgcls/trigger": "new_photos", "imgcls/folder_fingerprint": current},
    )

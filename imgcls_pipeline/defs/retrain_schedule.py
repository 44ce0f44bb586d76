"""Re-training on a schedule (cron ``retrain_cron``), only when the data changed enough since the
served model was trained (``core.lifecycle.retrain_policy``). The challenger then goes through the
gate (``served_model``); a promotion rebuilds the index for it. Training queues on pool ``gpu``."""

import dagster as dg

from imgcls_pipeline.core.data.split_files import read_splits
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.lifecycle.bundle_files import served_version
from imgcls_pipeline.core.lifecycle.registry import ModelVersion
from imgcls_pipeline.core.lifecycle.retrain_policy import TrainedOn, decide_retrain
from imgcls_pipeline.core.training.checkpoint import splits_fingerprint
from imgcls_pipeline.defs.jobs import COMMAND_ASSETS
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline.defs.run_config import ASSET_CONFIGS, lifecycle_settings

retrain_job = dg.define_asset_job(
    "scheduled_retraining",
    selection=dg.AssetSelection.assets(*COMMAND_ASSETS["pipeline"]),
    description="Re-scan and re-split, train a challenger, gate it against the served model and, "
    "when it is promoted, index and evaluate it.",
)


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


def trained_photos(version: ModelVersion) -> int | None:
    """The train + val photos ``version`` was trained on, as registered (None if unrecorded)."""
    rows = version.split_rows
    return rows["train"] + rows["val"] if "train" in rows and "val" in rows else None


@dg.schedule(
    cron_schedule=lifecycle_settings().retrain_cron,
    job=retrain_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-train when the data changed since the served model was trained (new classes, "
    "or at least retrain_min_new_fraction new photos); the new model is served only if the gate "
    "accepts it. Off until turned on: training takes the GPU for hours.",
)
def retrain_schedule(
    context: dg.ScheduleEvaluationContext, paths: PipelinePaths
) -> dg.RunRequest | dg.SkipReason:
    served = served_version(paths.artifacts, paths.models)
    if served is None:
        decision = decide_retrain(
            None, class_names=(), photos=0, splits_fingerprint="", min_new_fraction=0.0
        )
    else:
        try:
            tables = list(read_splits(paths.splits, ["train", "val"]).values())
            fingerprint = splits_fingerprint(paths.splits)
        except UserError as error:
            return dg.SkipReason(f"Cannot compare the data with {served.version}'s: {error}")
        decision = decide_retrain(
            TrainedOn(
                version=served.version,
                class_names=served.class_names,
                splits_fingerprint=served.splits_fingerprint,
                photos=trained_photos(served),
            ),
            class_names={name for table in tables for name in table["class_name"]},
            photos=sum(len(table) for table in tables),
            splits_fingerprint=fingerprint,
            min_new_fraction=lifecycle_settings().retrain_min_new_fraction,
        )
    if not decision.retrain:
        return dg.SkipReason(decision.reason)
    run_config = retrain_run_config(context.instance)
    if served is not None and lifecycle_settings().init_from == "served":
        # The served model's backbone weights start the training (its head is new).
        training = run_config["ops"]["trained_checkpoint"]["config"]
        training["pretrained_path"] = str(served.weights)
    return dg.RunRequest(
        run_config=run_config,
        tags={"imgcls/trigger": "schedule", "imgcls/retrain_reason": decision.reason},
    )

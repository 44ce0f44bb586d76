"""New photos → searchable in minutes, without re-training: a sensor watches the photo folder and,
once it has been quiet for ``settle_minutes``, re-scans, re-splits and embeds only the new or
changed gallery photos with the served model (``embeddings`` with the served bundle reused)."""

import time

import dagster as dg

from imgcls_pipeline.core.data.manifest import folder_fingerprint
from imgcls_pipeline.core.lifecycle.bundle_files import served_bundle
from imgcls_pipeline.core.lifecycle.settle import Sighting, quiet_seconds_left, watch
from imgcls_pipeline.defs.data_assets import FINGERPRINT_KEY
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline.defs.run_config import lifecycle_settings

# Scan, split, then bring the served bundle up to date: no training, no gate.
NEW_PHOTOS_ASSETS = [
    "image_manifest",
    "id_groups",
    "splits",
    "embeddings",
    "faiss_index",
    "evaluation",
]

index_new_photos_job = dg.define_asset_job(
    "index_new_photos",
    selection=dg.AssetSelection.assets(*NEW_PHOTOS_ASSETS),
    description="Re-scan the photo folder, re-split (existing IDs keep their split) and add the "
    "new or changed photos to the served model's index; nothing is re-trained.",
)

LOOK_EVERY_SECONDS = 60


def scanned_fingerprint(instance: dg.DagsterInstance) -> str | None:
    """The photo folder's fingerprint at the last ``image_manifest`` scan (any door's)."""
    event = instance.get_latest_materialization_event(dg.AssetKey("image_manifest"))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get(FINGERPRINT_KEY)
    return getattr(value, "value", value)


@dg.sensor(
    job=index_new_photos_job,
    minimum_interval_seconds=LOOK_EVERY_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every minute: when photos were added, removed or changed since the last scan "
    "and the folder has then stayed unchanged for settle_minutes, index them with the served "
    "model (no re-training). Waits while photos are still being copied.",
)
def new_photos_sensor(
    context: dg.SensorEvaluationContext, paths: PipelinePaths
) -> dg.RunRequest | dg.SkipReason:
    current = folder_fingerprint(paths.data)
    if current == scanned_fingerprint(context.instance):
        return dg.SkipReason(f"No change in {paths.data} since the last scan ({current}).")
    now = time.time()
    sighting = watch(Sighting.from_cursor(context.cursor), current, now)
    context.update_cursor(sighting.to_cursor())
    settle_minutes = lifecycle_settings().settle_minutes
    left = quiet_seconds_left(sighting, now, settle_minutes)
    if left > 0:
        return dg.SkipReason(
            f"Photos changed in {paths.data}; waiting until the folder has stayed unchanged for "
            f"settle_minutes={settle_minutes:g} ({left / 60:.1f} min to go)."
        )
    if served_bundle(paths.artifacts) is None:
        return dg.SkipReason(
            f"Photos changed in {paths.data}, but no model is served yet: run the pipeline "
            "(`imgcls pipeline`, or materialize everything) to train and serve the first one."
        )
    return dg.RunRequest(
        run_key=current,
        tags={"imgcls/trigger": "new_photos", "imgcls/folder_fingerprint": current},
    )

"""The Dagster code location: every asset, check, resource, schedule and sensor of the pipeline."""

import dagster as dg

from imgcls_pipeline.defs import (
    automation,
    cache_assets,
    data_assets,
    data_checks,
    jobs,
    lifecycle_assets,
    retrain_schedule,
    search_assets,
    training_assets,
)
from imgcls_pipeline.defs.gpu import GpuResource
from imgcls_pipeline.defs.resources import PipelinePaths, TrainingLauncher

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(
        [data_assets, cache_assets, training_assets, lifecycle_assets, search_assets]
    ),
    asset_checks=dg.load_asset_checks_from_modules([data_checks, search_assets]),
    jobs=[automation.index_new_photos_job, retrain_schedule.retrain_job, *jobs.command_jobs],
    sensors=[automation.new_photos_sensor],
    schedules=[retrain_schedule.retrain_schedule],
    resources={
        "paths": PipelinePaths.from_env(),
        "gpu": GpuResource(),
        "pipes_subprocess_client": training_assets.pipes_client(),
        "training_launcher": TrainingLauncher.from_env(),
    },
    # One process per run: torch is imported once, and training already runs in its own
    # process (Dagster Pipes), so a crash there cannot take the run worker down with it.
    executor=dg.in_process_executor,
)

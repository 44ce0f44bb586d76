"""The model lifecycle in Dagster: the trained checkpoint becomes an immutable version
(``model_version``), and the champion/challenger gate decides which version is served
(``served_model``), recording its decision as a table on the asset's page and failing a blocking
check when the challenger was rejected."""

from typing import Any

import dagster as dg

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.lifecycle.bundle_files import served_version
from imgcls_pipeline.core.lifecycle.gate import GateDecision, run_gate
from imgcls_pipeline.core.lifecycle.registry import (
    ModelVersion,
    list_versions,
    read_version,
    register_version,
)
from imgcls_pipeline.core.locks import FolderLock
from imgcls_pipeline.core.settings import EvaluationConfig, LifecycleSettings
from imgcls_pipeline.defs.gpu import GpuResource
from imgcls_pipeline.defs.metadata import rounded, table
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline.defs.run_config import ServedModelConfig
from imgcls_pipeline.defs.training_assets import trained_checkpoint

GROUP = "lifecycle"
ARTIFACTS_LOCK = "artifacts folder"
GATE_CHECK = "challenger_not_rejected"
DECISION_KEY = "decision"
DECISION_COLUMNS = [
    "challenger",
    "challenger_recall@1",
    "champion",
    "champion_recall@1",
    "difference",
    "tolerance",
    "floor",
    "promoted",
    "reason",
]


@dg.asset(
    group_name=GROUP,
    deps=[trained_checkpoint],
    kinds={"pytorch"},
    description="The trained checkpoint registered as an immutable version under "
    "models/<version>/ (weights, settings, classes, splits fingerprint, metrics, figures).",
)
def model_version(context: dg.AssetExecutionContext, paths: PipelinePaths) -> dg.MaterializeResult:
    version = register_version(paths.checkpoints, paths.models, paths.splits)
    context.log.info(f"Registered {version.version} in {version.folder}.")
    metadata: dict[str, Any] = {
        "version": version.version,
        "checkpoint_sha256": version.checkpoint_sha256,
        "classes": len(version.class_names),
        "folder": dg.MetadataValue.path(str(version.folder)),
    }
    if version.val_recall_at_1 is not None:
        metadata["training_val_recall@1"] = rounded(float(version.val_recall_at_1))
    metadata.update({f"{split}_photos": rows for split, rows in version.split_rows.items()})
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name=GROUP,
    deps=[model_version],
    kinds={"pytorch", "faiss"},
    check_specs=[
        dg.AssetCheckSpec(
            GATE_CHECK,
            asset="served_model",
            blocking=True,
            description="The version model_version registered is served (or already was): "
            "fails when the gate kept the champion (the decision table says why).",
        )
    ],
    description="The champion/challenger gate: the registered version and the served one are "
    "scored on the same queries (the current val split against each model's own train "
    "gallery); the challenger is served only if its Recall@1 is at least the champion's minus "
    "promotion_tolerance and at least min_val_recall_at_1. Otherwise nothing served changes.",
)
def served_model(
    context: dg.AssetExecutionContext,
    config: ServedModelConfig,
    paths: PipelinePaths,
    gpu: GpuResource,
) -> dg.MaterializeResult:
    challenger = _challenger(context.instance, paths)
    served = served_version(paths.artifacts, paths.models)
    if served is not None and served.version == challenger.version:
        reason = f"{challenger.version} is already the served model."
        context.log.info(reason)
        return dg.MaterializeResult(
            metadata={"served_version": challenger.version, "promoted": False},
            check_results=[
                dg.AssetCheckResult(check_name=GATE_CHECK, passed=True, description=reason)
            ],
        )
    evaluation = EvaluationConfig(
        flip_tta=config.flip_tta,
        index_type=config.index_type,
        embedding_batch_size=config.embedding_batch_size,
        min_val_recall_at_1=config.min_val_recall_at_1,
    )
    # The gate builds bundles and may switch the served one: the artifacts folder's writer.
    with FolderLock(paths.artifacts, ARTIFACTS_LOCK):
        decision = run_gate(
            challenger,
            paths.artifacts,
            paths.models,
            paths.data,
            paths.splits,
            evaluation=evaluation,
            lifecycle=LifecycleSettings(promotion_tolerance=config.promotion_tolerance),
            num_workers=gpu.resolve().num_workers,
            image_cache=config.image_cache,
            progress=bool(context.run.tags.get("imgcls/command")),  # a terminal is watching
            log=context.log.info,
        )
    return dg.MaterializeResult(
        metadata=decision_metadata(decision),
        check_results=[
            dg.AssetCheckResult(
                check_name=GATE_CHECK,
                passed=decision.promote,
                description=decision.reason,
                metadata={DECISION_KEY: decision_table(decision)},
            )
        ],
    )


def _challenger(instance: dg.DagsterInstance, paths: PipelinePaths) -> ModelVersion:
    """The version model_version registered last (a training that reproduced an older model
    registers that one again), else the newest in the models folder."""
    event = instance.get_latest_materialization_event(model_version.key)
    registered = event.asset_materialization.metadata.get("version") if event else None
    if registered is not None and (paths.models / str(registered.value)).is_dir():
        return read_version(paths.models, str(registered.value))
    versions = list_versions(paths.models)
    if not versions:
        raise UserError(
            f"No model version in {paths.models}: materialize model_version (or run "
            "`imgcls train`) first."
        )
    return versions[-1]


def decision_row(decision: GateDecision) -> dict[str, Any]:
    return {
        "challenger": decision.challenger,
        "challenger_recall@1": decision.challenger_recall_at_1,
        "champion": decision.champion or "none",
        "champion_recall@1": decision.champion_recall_at_1,
        "difference": decision.difference,
        "tolerance": decision.tolerance,
        "floor": decision.floor,
        "promoted": decision.promote,
        "reason": decision.reason,
    }


def decision_table(decision: GateDecision) -> dg.TableMetadataValue:
    return table([decision_row(decision)], DECISION_COLUMNS)


def decision_metadata(decision: GateDecision) -> dict[str, Any]:
    """The decision as one table row, and its numbers on their own (plotted across runs)."""
    numbers = {
        "challenger_recall@1": decision.challenger_recall_at_1,
        "champion_recall@1": decision.champion_recall_at_1,
        "difference": decision.difference,
    }
    return {
        DECISION_KEY: decision_table(decision),
        "served_version": decision.challenger
        if decision.promote
        else (decision.champion or "none"),
        "promoted": decision.promote,
        **{key: rounded(float(value)) for key, value in numbers.items() if value is not None},
    }

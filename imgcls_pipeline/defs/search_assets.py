"""Assets of the search half: embeddings → faiss_index → evaluation.

torch, timm, faiss and matplotlib are imported inside the assets, not here: loading the code
location (UI, sensors, `imgcls split`) then costs about a second instead of five.
"""

import functools
from collections.abc import Callable
from typing import Any

import dagster as dg

from imgcls_pipeline.core.data.image_cache import CacheMode
from imgcls_pipeline.core.data.preflight import preflight
from imgcls_pipeline.core.data.split_files import read_split, read_splits
from imgcls_pipeline.core.data.splitting import SPLITS
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.lifecycle.bundles import (
    Bundle,
    build_bundle,
    serve,
    served_bundle,
    splits_fingerprint,
)
from imgcls_pipeline.core.lifecycle.registry import ModelVersion, read_version
from imgcls_pipeline.core.lifecycle.serving import remove_stale_bundles
from imgcls_pipeline.core.locks import FolderLock
from imgcls_pipeline.core.search import embeddings_store, evaluation_store
from imgcls_pipeline.core.settings import EvaluationConfig
from imgcls_pipeline.defs.data_assets import splits
from imgcls_pipeline.defs.gpu import GpuResource
from imgcls_pipeline.defs.lifecycle_assets import ARTIFACTS_LOCK, served_model
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline.defs.result_metadata import evaluation_metadata, floor_check_metadata
from imgcls_pipeline.defs.run_config import (
    EmbeddingsConfig,
    EvaluationRunConfig,
    FaissIndexConfig,
)

GROUP = "search"


def _writes_artifacts(asset_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Hold the artifacts folder's lock while the asset runs: a second writer refuses at once
    (``core.locks``). Dagster passes resources by name, so ``paths`` is a keyword."""

    @functools.wraps(asset_fn)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with FolderLock(kwargs["paths"].artifacts, ARTIFACTS_LOCK):
            return asset_fn(*args, **kwargs)

    return locked


def _served_bundle(paths: PipelinePaths) -> Bundle:
    """The served bundle, read once: everything below comes from that one folder."""
    bundle = served_bundle(paths.artifacts)
    if bundle is None:
        raise UserError(
            f"No model is served from {paths.artifacts}: run `imgcls train` (or materialize "
            "served_model), which serves a new model once it passes the gate."
        )
    return bundle


def _served(paths: PipelinePaths) -> tuple[ModelVersion, Bundle]:
    """The served model and its bundle."""
    bundle = _served_bundle(paths)
    return read_version(paths.models, bundle.model_version), bundle


def _rebuild_and_serve(
    context: dg.AssetExecutionContext,
    paths: PipelinePaths,
    version: ModelVersion,
    served: Bundle,
    *,
    flip_tta: bool,
    index_type: str,
    batch_size: int,
    workers: int,
    image_cache: CacheMode,
) -> Bundle:
    """A new bundle for the served model, reusing the served one's rows for unchanged photos,
    switched in atomically."""
    bundle = build_bundle(
        paths.artifacts,
        version,
        paths.data,
        paths.splits,
        flip_tta=flip_tta,
        index_type=index_type,
        batch_size=batch_size,
        num_workers=workers,
        reuse=served,
        image_cache=image_cache,
        progress=bool(context.run.tags.get("imgcls/command")),  # a terminal is watching
        log=context.log.info,
        # Its own evaluation with the defaults; the evaluation asset reports with its settings.
        evaluation=EvaluationConfig(
            flip_tta=flip_tta, index_type=index_type, embedding_batch_size=batch_size
        ),
    )
    serve(paths.artifacts, bundle)
    context.log.info(f"Serving bundle {bundle.bundle_id} of {version.version}.")
    return bundle


def _bundle_metadata(bundle: Bundle) -> dict[str, Any]:
    return {
        "bundle": bundle.bundle_id,
        "model_version": bundle.model_version,
        "bundle_folder": dg.MetadataValue.path(str(bundle.folder)),
    }


@dg.asset(
    group_name=GROUP,
    deps=[served_model, splits],
    kinds={"pytorch", "numpy"},
    description="Embedding of every split image by the served model, in the served bundle: "
    "artifacts/embeddings/{split}.npy (float32, unit rows, row i = row i of splits/{split}.csv). "
    "When the splits or flip_tta changed, a new bundle is built (only new or changed photos are "
    "embedded) and served in one atomic switch; otherwise no work.",
)
@_writes_artifacts
def embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingsConfig,
    paths: PipelinePaths,
    gpu: GpuResource,
) -> dg.MaterializeResult:
    version, bundle = _served(paths)
    fingerprint = splits_fingerprint(paths.splits)
    if bundle.splits_fingerprint == fingerprint and bundle.flip_tta == config.flip_tta:
        remove_stale_bundles(paths.artifacts)  # those of killed runs, as a switch would
        context.log.info(f"The served bundle of {version.version} is up to date.")
        return dg.MaterializeResult(metadata={"recomputed": False, **_bundle_metadata(bundle)})
    if bundle.splits_fingerprint != fingerprint:
        context.log.info(
            f"The splits changed since bundle {bundle.bundle_id} was built: embedding the new or "
            f"changed photos with the served model {version.version} (the others are reused)."
        )
    tables = read_splits(paths.splits, SPLITS)
    context.log.info(preflight(tables, paths.data, paths.artifacts))
    bundle = _rebuild_and_serve(
        context,
        paths,
        version,
        bundle,
        flip_tta=config.flip_tta,
        index_type=bundle.index_type,
        batch_size=config.embedding_batch_size,
        workers=gpu.resolve().num_workers,  # JPEG decoding in parallel, as in training
        image_cache=config.image_cache,
    )
    return dg.MaterializeResult(
        metadata={
            "recomputed": True,
            **_bundle_metadata(bundle),
            **{f"{split}_rows": len(frame) for split, frame in tables.items()},
            "dimension": bundle.dimension,
        }
    )


@dg.asset(
    group_name=GROUP,
    deps=[embeddings],
    kinds={"faiss"},
    description="Faiss index over the gallery (train split) in the served bundle: "
    "artifacts/index/gallery.faiss and gallery.csv. Exact IndexFlatL2 by default; index_type "
    "ivf/hnsw for huge galleries (a change re-indexes the served embeddings, no re-embedding).",
)
@_writes_artifacts
def faiss_index(
    context: dg.AssetExecutionContext,
    config: FaissIndexConfig,
    paths: PipelinePaths,
    gpu: GpuResource,
) -> dg.MaterializeResult:
    from imgcls_pipeline.core.search.index import FOLDER, INDEX_FILE, read_index_info

    version, bundle = _served(paths)
    if bundle.index_type != config.index_type:
        bundle = _rebuild_and_serve(
            context,
            paths,
            version,
            bundle,
            flip_tta=bundle.flip_tta,
            index_type=config.index_type,
            batch_size=EmbeddingsConfig().embedding_batch_size,
            workers=gpu.resolve().num_workers,
            image_cache=EmbeddingsConfig().image_cache,
        )
    folder = bundle.folder / FOLDER
    rows = int(read_index_info(folder).get("rows", 0)) or len(read_split(paths.splits, "train"))
    context.log.info(f"{rows} gallery images indexed ({bundle.index_type}).")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "index_type": bundle.index_type,
            "dimension": bundle.dimension,
            "index_file": dg.MetadataValue.path(str(folder / INDEX_FILE)),
            **_bundle_metadata(bundle),
        }
    )


@dg.asset(
    group_name=GROUP,
    deps=[faiss_index],
    kinds={"faiss"},
    description="Queries of eval_splits (default val; add test for the final evaluation) against "
    "the served bundle's gallery: Recall@K, kNN accuracy, MAP@R, per-class accuracy, confusion "
    "matrix. artifacts/evaluation/{split}.json (in the served bundle: the report of that model "
    "and index).",
)
@_writes_artifacts
def evaluation(
    context: dg.AssetExecutionContext, config: EvaluationRunConfig, paths: PipelinePaths
) -> dg.MaterializeResult:
    from imgcls_pipeline.core.search.evaluation import evaluate_split
    from imgcls_pipeline.core.search.index import FOLDER, load_index
    from imgcls_pipeline.core.search.report_files import write_evaluation_files
    from imgcls_pipeline.core.search.rerank import Reranker

    bundle = _served_bundle(paths)
    index, gallery = load_index(bundle.folder / FOLDER)
    reranker = Reranker.build(index, config)  # once: dba_alpha_qe augments the whole gallery
    metadata: dict = _bundle_metadata(bundle)
    for split in config.eval_splits:
        queries = read_split(paths.splits, split)
        if queries.empty:
            context.log.warning(
                f"The {split} split is empty (its ratio is 0?); nothing to evaluate."
            )
            metadata[f"{split}/queries"] = 0
            continue
        vectors = embeddings_store.read_embeddings(
            bundle.folder / embeddings_store.FOLDER, split, rows=len(queries)
        )
        result = evaluate_split(
            queries,
            vectors,
            index,
            gallery,
            recall_k_values=config.recall_k_values,
            top_k=config.top_k,
            rerank=reranker,
        )
        report_path = evaluation_store.write_evaluation(
            bundle.folder / evaluation_store.FOLDER,
            split,
            result.metrics,
            min_val_recall_at_1=config.min_val_recall_at_1,
        )
        report = evaluation_store.read_evaluation(report_path.parent, split) or result.metrics
        files = write_evaluation_files(report_path, report, result.worst_rows, paths.data)
        summary = ", ".join(f"{k} {result.metrics[k]:.4f}" for k in result.headline_keys)
        context.log.info(f"{split}: {summary}; report {files.html}")
        metadata.update(evaluation_metadata(split, result, files))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(
    asset=evaluation,
    blocking=True,
    description="val Recall@1 is at least min_val_recall_at_1 (set in the evaluation config); "
    "fails the run (and `imgcls`) when it is not.",
)
def val_recall_at_1_floor(paths: PipelinePaths) -> dg.AssetCheckResult:
    bundle = _served_bundle(paths)
    report = evaluation_store.read_evaluation(bundle.folder / evaluation_store.FOLDER, "val")
    if report is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"reason": "val was not evaluated (eval_splits lacks val, or val is empty)"},
        )
    floor = float(report.get("settings", {}).get("min_val_recall_at_1", 0.0))
    value = float(report["recall@1"])
    passed = value >= floor
    return dg.AssetCheckResult(
        passed=passed,
        description=f"val Recall@1 {value:.4f} of {bundle.model_version} is "
        + ("at least" if passed else "below")
        + f" min_val_recall_at_1 {floor:g}.",
        metadata=floor_check_metadata(value, floor),
    )

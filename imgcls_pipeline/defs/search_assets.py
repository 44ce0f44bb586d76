"""Assets of the search half: embeddings → faiss_index → evaluation.

torch, timm, faiss and matplotlib are imported inside the assets, not here: loading the code
location (UI, sensors, `imgcls split`) then costs about a second instead of five.
"""

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from imgcls_pipeline.core.data.preflight import preflight
from imgcls_pipeline.core.data.split_files import read_split, read_splits
from imgcls_pipeline.core.data.splitting import SPLITS
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.locks import FolderLock
from imgcls_pipeline.core.search import embeddings_store, evaluation_store
from imgcls_pipeline.core.training.checkpoint import BEST
from imgcls_pipeline.defs.data_assets import splits
from imgcls_pipeline.defs.gpu import GpuResource
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline.defs.result_metadata import evaluation_metadata, floor_check_metadata
from imgcls_pipeline.defs.run_config import (
    EmbeddingsConfig,
    EvaluationRunConfig,
    FaissIndexConfig,
)
from imgcls_pipeline.defs.training_assets import trained_checkpoint

GROUP = "search"


def _writes_artifacts(asset_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Hold the artifacts folder's lock while the asset runs: a second writer refuses at once
    (``core.locks``). Dagster passes resources by name, so ``paths`` is a keyword."""

    @functools.wraps(asset_fn)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with FolderLock(kwargs["paths"].artifacts, "artifacts folder"):
            return asset_fn(*args, **kwargs)

    return locked


def _best_checkpoint(paths: PipelinePaths) -> Path:
    best = paths.checkpoints / BEST
    if not best.is_file():
        raise UserError(
            f"No trained model at {best}: materialize trained_checkpoint (or run `imgcls train`) "
            f"first, or point IMGCLS_CHECKPOINT_DIR at the folder holding {BEST}."
        )
    return best


@dg.asset(
    group_name=GROUP,
    deps=[trained_checkpoint, splits],
    kinds={"pytorch", "numpy"},
    description="Embedding of every split image from best_model.pt: "
    "artifacts/embeddings/{split}.npy (float32, unit rows, row i = row i of splits/{split}.csv). "
    "Does no work when the checkpoint, splits and flip_tta are unchanged.",
)
@_writes_artifacts
def embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingsConfig,
    paths: PipelinePaths,
    gpu: GpuResource,
) -> dg.MaterializeResult:
    from imgcls_pipeline.core.data.image_cache import open_cache
    from imgcls_pipeline.core.search.inference import embed_frame, load_model

    checkpoint = _best_checkpoint(paths)
    folder = paths.artifacts / embeddings_store.FOLDER
    inputs = embeddings_store.inputs_signature(checkpoint, paths.splits, flip_tta=config.flip_tta)
    if embeddings_store.is_current(folder, inputs):
        context.log.info("Checkpoint, splits and flip_tta unchanged: embeddings are up to date.")
        return dg.MaterializeResult(metadata={"recomputed": False, "checkpoint": str(checkpoint)})

    tables = read_splits(paths.splits, SPLITS)
    context.log.info(preflight(tables, paths.data, paths.artifacts))
    loaded = load_model(checkpoint)
    workers = gpu.resolve().num_workers  # JPEG decoding in parallel, as in training
    cache = open_cache(paths.artifacts, paths.data, loaded.image_size, config.image_cache)
    rows = {}
    dimension = 0
    for split, frame in tables.items():
        matrix = embed_frame(
            loaded,
            frame,
            paths.data,
            batch_size=config.embedding_batch_size,
            num_workers=workers,
            flip_tta=config.flip_tta,
            progress=bool(context.run.tags.get("imgcls/command")),  # a terminal is watching
            desc=f"embedding {split}",
            image_cache=cache,
        )
        embeddings_store.write_embeddings(folder, split, matrix)
        rows[split] = len(frame)
        dimension = matrix.shape[1] if matrix.ndim == 2 else dimension
        context.log.info(f"{split}: {len(frame)} embeddings")
    info = embeddings_store.EmbeddingsInfo(
        inputs=inputs,
        checkpoint=str(checkpoint),
        epoch=int(loaded.checkpoint.get("epoch", -1)),
        backbone=loaded.checkpoint["config"]["model"]["backbone"],
        image_size=loaded.image_size,
        rows=rows,
    )
    embeddings_store.write_info(folder, info)
    return dg.MaterializeResult(
        metadata={
            "recomputed": True,
            "checkpoint": str(checkpoint),
            "device": str(loaded.device),
            **{f"{split}_rows": n for split, n in rows.items()},
            "dimension": int(dimension),
        }
    )


@dg.asset(
    group_name=GROUP,
    deps=[embeddings],
    kinds={"faiss"},
    description="Faiss index over the gallery (train split): artifacts/index/gallery.faiss and "
    "gallery.csv. Exact IndexFlatL2 by default; index_type ivf/hnsw for huge galleries.",
)
@_writes_artifacts
def faiss_index(
    context: dg.AssetExecutionContext, config: FaissIndexConfig, paths: PipelinePaths
) -> dg.MaterializeResult:
    from imgcls_pipeline.core.search.index import FOLDER, INDEX_FILE, build_index, save_index

    gallery = read_split(paths.splits, "train")
    embeddings_dir = paths.artifacts / embeddings_store.FOLDER
    vectors = embeddings_store.read_embeddings(embeddings_dir, "train", rows=len(gallery))
    built_from = embeddings_store.read_info(embeddings_dir)
    index = build_index(vectors, config.index_type)
    folder = paths.artifacts / FOLDER
    save_index(
        index,
        gallery,
        folder,
        checkpoint=built_from.checkpoint,
        checkpoint_sha256=built_from.inputs["checkpoint_sha256"],
        index_type=config.index_type,
        flip_tta=built_from.inputs.get("flip_tta") == "true",
    )
    context.log.info(f"Indexed {index.ntotal} gallery images ({config.index_type}).")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(index.ntotal),
            "index_type": config.index_type,
            "dimension": int(index.d),
            "index_file": dg.MetadataValue.path(str(folder / INDEX_FILE)),
        }
    )


@dg.asset(
    group_name=GROUP,
    deps=[faiss_index],
    kinds={"faiss"},
    description="Queries of eval_splits (default val; add test for the final evaluation) against "
    "the gallery: Recall@K, kNN accuracy, MAP@R, per-class accuracy, confusion matrix. "
    "artifacts/evaluation/{split}.json.",
)
@_writes_artifacts
def evaluation(
    context: dg.AssetExecutionContext, config: EvaluationRunConfig, paths: PipelinePaths
) -> dg.MaterializeResult:
    from imgcls_pipeline.core.search.evaluation import evaluate_split
    from imgcls_pipeline.core.search.index import FOLDER, load_index
    from imgcls_pipeline.core.search.report_files import write_evaluation_files
    from imgcls_pipeline.core.search.rerank import Reranker

    index, gallery = load_index(paths.artifacts / FOLDER)
    reranker = Reranker.build(index, config)  # once: dba_alpha_qe augments the whole gallery
    metadata: dict = {}
    for split in config.eval_splits:
        queries = read_split(paths.splits, split)
        if queries.empty:
            context.log.warning(
                f"The {split} split is empty (its ratio is 0?); nothing to evaluate."
            )
            metadata[f"{split}/queries"] = 0
            continue
        vectors = embeddings_store.read_embeddings(
            paths.artifacts / embeddings_store.FOLDER, split, rows=len(queries)
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
            paths.artifacts / evaluation_store.FOLDER,
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
    description="val Recall@1 is at least min_val_recall_at_1 (set in the evaluation config).",
)
def val_recall_at_1_floor(paths: PipelinePaths) -> dg.AssetCheckResult:
    report = evaluation_store.read_evaluation(paths.artifacts / evaluation_store.FOLDER, "val")
    if report is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"reason": "val was not evaluated (eval_splits lacks val, or val is empty)"},
        )
    floor = float(report.get("settings", {}).get("min_val_recall_at_1", 0.0))
    value = float(report["recall@1"])
    return dg.AssetCheckResult(
        passed=value >= floor,
        description=f"val Recall@1 {value:.4f}, floor {floor:g}",
        metadata=floor_check_metadata(value, floor),
    )

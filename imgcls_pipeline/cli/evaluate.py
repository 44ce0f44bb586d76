"""``imgcls evaluate``: the original specification's evaluate.py, without Dagster.

By default the served bundle, from its own embeddings and index (embedded again with its model
when the split tables changed since it was built); with ``--checkpoint``, any checkpoint. Any
split, scored against the train split as the gallery. The checkpoint, the tables and the data
folder are checked before torch is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imgcls_pipeline.cli.flags import read_command_line, refuse_arguments
from imgcls_pipeline.cli.preflight import check_checkpoint, check_data_folder, check_split_tables
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.folders import Folders
from imgcls_pipeline.core.lifecycle.bundle_files import Bundle, served_bundle, splits_fingerprint
from imgcls_pipeline.core.lifecycle.registry import read_version
from imgcls_pipeline.core.settings import EVAL_SPLITS, PipelineConfig
from imgcls_pipeline.core.training.checkpoint import BEST


def run(command: str, tokens: Sequence[str]) -> int:
    line = read_command_line(tokens, command)
    refuse_arguments(line)
    options, config = line.options, line.config
    split = options.get("split", "val")
    if split not in EVAL_SPLITS:
        raise UserError(f"--split must be one of {', '.join(EVAL_SPLITS)}, not '{split}'.")
    folders = Folders.from_env(**options)  # flags, then a --settings file's folders, then ...
    bundle = None if "checkpoint" in options else served_bundle(folders.artifacts)
    if bundle is not None:
        checkpoint = read_version(folders.models, bundle.model_version).weights
    else:
        checkpoint = Path(options.get("checkpoint") or folders.checkpoints / BEST)
    check_checkpoint(checkpoint, "--checkpoint FILE")
    tables = check_split_tables(folders.splits, ["train", split])
    check_data_folder(folders.data)
    if bundle is not None and bundle.splits_fingerprint != splits_fingerprint(folders.splits):
        print(
            f"The split tables changed since the served bundle {bundle.bundle_id} was built: "
            f"embedding them with its model {bundle.model_version}.",
            file=sys.stderr,
        )
        bundle = None
    # torch, Faiss and the model: only once the checks have passed.
    from imgcls_pipeline.core.search.evaluation import evaluate_split
    from imgcls_pipeline.core.search.evaluation_store import metrics_markdown_table, write_report

    gallery, queries = tables["train"], tables[split]  # validated before the model is loaded
    if bundle is not None:
        index, query_vectors = _served_vectors(bundle, split, len(queries))
        print(
            f"Evaluating the served bundle {bundle.bundle_id} ({bundle.model_version}) on "
            f"{len(queries)} {split} photos",
            file=sys.stderr,
        )
    else:
        index, query_vectors = _embedded_vectors(
            checkpoint, gallery, queries, folders.data, config, split
        )
    result = evaluate_split(
        queries,
        query_vectors,
        index,
        gallery,
        recall_k_values=config.evaluation.recall_k_values,
        top_k=config.evaluation.top_k,
        rerank=config.evaluation,
    )
    print(metrics_markdown_table(result.metrics))
    if "output" in options:
        from imgcls_pipeline.core.search.report_files import write_evaluation_files

        path = write_report(options["output"], result.metrics, split, checkpoint=str(checkpoint))
        report = {**result.metrics, "split": split, "checkpoint": str(checkpoint)}
        figures = write_evaluation_files(path, report, result.worst_rows, folders.data)
        page = f"; HTML report {figures.html}" if figures.html else ""
        print(f"written to {path}{page}", file=sys.stderr)
    return 0


def _served_vectors(bundle: Bundle, split: str, rows: int) -> tuple[Any, Any]:
    """The served bundle's own index and ``split`` embeddings: nothing to embed again."""
    from imgcls_pipeline.core.search import embeddings_store
    from imgcls_pipeline.core.search.index import FOLDER, load_index

    index, _ = load_index(bundle.part(FOLDER))
    vectors = embeddings_store.read_embeddings(
        bundle.part(embeddings_store.FOLDER), split, rows=rows
    )
    return index, vectors


def _embedded_vectors(
    checkpoint: Path,
    gallery: Any,
    queries: Any,
    data: Path,
    config: PipelineConfig,
    split: str,
) -> tuple[Any, Any]:
    """An exact index of the gallery and the queries' embeddings, made with ``checkpoint``."""
    from imgcls_pipeline.core.search.index import build_index
    from imgcls_pipeline.core.search.inference import embed_frame, load_model

    loaded = load_model(checkpoint)
    print(
        f"Embedding {len(gallery)} gallery and {len(queries)} {split} photos on {loaded.device}",
        file=sys.stderr,
    )
    embedding = {
        "batch_size": config.evaluation.embedding_batch_size,
        "progress": True,
        "flip_tta": config.evaluation.flip_tta,
    }
    gallery_vectors = embed_frame(loaded, gallery, data, desc="embedding train", **embedding)
    query_vectors = embed_frame(loaded, queries, data, desc=f"embedding {split}", **embedding)
    return build_index(gallery_vectors), query_vectors

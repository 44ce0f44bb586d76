"""``imgcls evaluate``: the original specification's evaluate.py, without Dagster.

Any checkpoint, any split, scored against the train split as the gallery. The checkpoint, the
tables and the data folder are checked before torch is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from imgcls_pipeline.cli.flags import read_command_line, refuse_arguments
from imgcls_pipeline.cli.preflight import check_checkpoint, check_data_folder, check_split_tables
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.folders import Folders
from imgcls_pipeline.core.settings import EVAL_SPLITS
from imgcls_pipeline.core.training.checkpoint import BEST


def run(command: str, tokens: Sequence[str]) -> int:
    line = read_command_line(tokens, command)
    refuse_arguments(line)
    options, config = line.options, line.config
    split = options.get("split", "val")
    if split not in EVAL_SPLITS:
        raise UserError(f"--split must be one of {', '.join(EVAL_SPLITS)}, not '{split}'.")
    folders = Folders.from_env(**options)  # flags, then a --settings file's folders, then ...
    checkpoint = Path(options.get("checkpoint") or folders.checkpoints / BEST)
    check_checkpoint(checkpoint, "--checkpoint FILE")
    tables = check_split_tables(folders.splits, ["train", split])
    check_data_folder(folders.data)
    # torch, Faiss and the model: only once the checks have passed.
    from imgcls_pipeline.core.search.evaluation import evaluate_split
    from imgcls_pipeline.core.search.evaluation_store import metrics_markdown_table, write_report
    from imgcls_pipeline.core.search.index import build_index
    from imgcls_pipeline.core.search.inference import embed_frame, load_model

    gallery, queries = tables["train"], tables[split]  # validated before the model is loaded
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
    gallery_vectors = embed_frame(
        loaded, gallery, folders.data, desc="embedding train", **embedding
    )
    query_vectors = embed_frame(
        loaded, queries, folders.data, desc=f"embedding {split}", **embedding
    )
    result = evaluate_split(
        queries,
        query_vectors,
        build_index(gallery_vectors),
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

"""``imgcls evaluate`` and ``imgcls predict``: use a trained checkpoint directly, without Dagster.

``evaluate`` is the original specification's evaluate.py: any checkpoint, any split, scored
against the train split as the gallery. ``predict`` classifies new photos from the saved index
(``<artifacts>/index``) without re-reading the training photos.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings import PipelineConfig, apply_overrides

EVALUATE_FLAGS = ("checkpoint", "split", "data_dir", "splits_dir", "output")
PREDICT_FLAGS = ("checkpoint", "index_dir", "artifacts_dir", "output")


def _flags(tokens: Sequence[str], command: str, names: Sequence[str]):
    from imgcls_pipeline.cli import parse_flags

    folders, settings, positional = parse_flags(tokens, command, extra_flags=names)
    config = apply_overrides(PipelineConfig(), settings)
    return folders, config, positional


def _paths(folders: dict[str, str]):
    from imgcls_pipeline.defs.resources import PipelinePaths

    known = {k: v for k, v in folders.items() if k in ("data_dir", "splits_dir", "artifacts_dir")}
    return PipelinePaths.from_env(**known)


def evaluate(tokens: Sequence[str]) -> int:
    from imgcls_pipeline.core.data.split_files import read_split
    from imgcls_pipeline.core.search.evaluation import evaluate_split
    from imgcls_pipeline.core.search.index import build_index
    from imgcls_pipeline.core.search.inference import embed_frame, load_model
    from imgcls_pipeline.core.search.report import metrics_markdown_table

    folders, config, positional = _flags(tokens, "evaluate", EVALUATE_FLAGS)
    if positional:
        raise UserError(f"Unexpected argument '{positional[0]}': flags look like --name=value.")
    split = folders.get("split", "val")
    if split not in ("val", "test"):
        raise UserError(f"--split must be val or test, not '{split}'.")
    checkpoint = folders.get("checkpoint", "./checkpoints/best_model.pt")
    paths = _paths(folders)
    loaded = load_model(checkpoint)
    gallery = read_split(paths.splits, "train")
    queries = read_split(paths.splits, split)
    print(
        f"Embedding {len(gallery)} gallery and {len(queries)} {split} photos on {loaded.device}",
        file=sys.stderr,
    )
    batch = config.evaluation.embedding_batch_size
    gallery_vectors = embed_frame(loaded, gallery, paths.data, batch_size=batch, progress=True)
    query_vectors = embed_frame(loaded, queries, paths.data, batch_size=batch, progress=True)
    result = evaluate_split(
        queries,
        query_vectors,
        build_index(gallery_vectors),
        gallery,
        recall_k_values=config.evaluation.recall_k_values,
        top_k=config.evaluation.top_k,
    )
    report = {**result.metrics, "split": split, "checkpoint": str(checkpoint)}
    print(metrics_markdown_table(report))
    if "output" in folders:
        from imgcls_pipeline.core.atomic import write_text_atomic

        write_text_atomic(folders["output"], json.dumps(report, indent=2, ensure_ascii=False))
        print(f"written to {folders['output']}", file=sys.stderr)
    return 0


def predict(tokens: Sequence[str]) -> int:
    from imgcls_pipeline.core.search.index import load_index
    from imgcls_pipeline.core.search.inference import classify, expand_inputs, load_model

    folders, config, positional = _flags(tokens, "predict", PREDICT_FLAGS)
    if not positional:
        raise UserError(
            "Name one or more photos or folders to classify, e.g. "
            "`imgcls predict --checkpoint ./checkpoints/best_model.pt photo.jpg`."
        )
    output = Path(folders["output"]) if "output" in folders else None
    if output is not None and output.suffix.lower() not in (".csv", ".json"):
        raise UserError(f"--output {output} must end in .csv or .json.")
    checkpoint = folders.get("checkpoint", "./checkpoints/best_model.pt")
    index_dir = Path(folders.get("index_dir") or _paths(folders).artifacts / "index")
    index, gallery = load_index(index_dir)
    _check_index_matches(index_dir, checkpoint)
    loaded = load_model(checkpoint)
    inputs = expand_inputs(positional)
    if not inputs:
        raise UserError(f"No photos found in {', '.join(positional)}.")
    predictions = classify(loaded, index, gallery, inputs, top_k=config.evaluation.top_k)
    rows = [
        {
            "image_path": p.image_path,
            "predicted_class": p.predicted_class,
            "confidence": round(p.confidence, 4),
            "neighbours": p.neighbours,
            "error": p.error,
        }
        for p in predictions
    ]
    _print_predictions(rows)
    if output is not None:
        _write_predictions(output, rows)
    return 0 if all(p.error is None for p in predictions) else 1


def _check_index_matches(index_dir: Path, checkpoint: str) -> None:
    """The index must hold embeddings of the same model, or every distance is meaningless."""
    from imgcls_pipeline.core.hashing import file_sha256
    from imgcls_pipeline.core.search.index import read_index_info

    info = read_index_info(index_dir)
    if not Path(checkpoint).is_file() or "checkpoint_sha256" not in info:
        return  # load_model names a missing checkpoint; an index without info cannot be checked
    if file_sha256(checkpoint) != info["checkpoint_sha256"]:
        raise UserError(
            f"The index in {index_dir} was built with another checkpoint than {checkpoint}; "
            f"materialize embeddings and faiss_index again (imgcls index), or pass the "
            f"checkpoint it was built from ({info.get('checkpoint')})."
        )


def _print_predictions(rows: list[dict]) -> None:
    for row in rows:
        if row["error"]:
            print(f"{row['image_path']}: ERROR {row['error']}")
            continue
        print(f"{row['image_path']}: {row['predicted_class']} (confidence {row['confidence']:.2f})")
        for rank, n in enumerate(row["neighbours"][:5], start=1):
            print(f"    {rank}. {n['class_name']:<20} d={n['distance']:.4f}  {n['image_path']}")


def _write_predictions(path: Path, rows: list[dict]) -> None:
    from imgcls_pipeline.core.atomic import write_csv_atomic, write_text_atomic

    if path.suffix.lower() == ".json":
        write_text_atomic(path, json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        flat = [
            {
                "image_path": r["image_path"],
                "predicted_class": r["predicted_class"],
                "confidence": r["confidence"],
                "error": r["error"] or "",
                "neighbours": json.dumps(r["neighbours"], ensure_ascii=False),
            }
            for r in rows
        ]
        write_csv_atomic(path, pd.DataFrame(flat))
    print(f"written to {path}", file=sys.stderr)

"""``imgcls predict``: classify new photos from the saved index (``<artifacts>/index``), without
Dagster and without re-reading the training photos."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from imgcls_pipeline.cli.flags import read_command_line
from imgcls_pipeline.core.atomic import write_csv_atomic, write_text_atomic
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.folders import Folders
from imgcls_pipeline.core.hashing import file_sha256
from imgcls_pipeline.core.search.index import FOLDER, load_index, read_index_info
from imgcls_pipeline.core.search.inference import classify, expand_inputs, load_model
from imgcls_pipeline.core.training.checkpoint import BEST


def run(command: str, tokens: Sequence[str]) -> int:
    line = read_command_line(tokens, command)
    options, config, positional = line.options, line.config, line.positional
    if not positional:
        raise UserError(
            "Name one or more photos or folders to classify, e.g. "
            "`imgcls predict --checkpoint ./checkpoints/best_model.pt photo.jpg`."
        )
    output = Path(options["output"]) if "output" in options else None
    if output is not None and output.suffix.lower() not in (".csv", ".json"):
        raise UserError(f"--output {output} must end in .csv or .json.")
    folders = Folders.from_env(artifacts_dir=options.get("artifacts_dir"))
    checkpoint = options.get("checkpoint") or str(folders.checkpoints / BEST)
    index_dir = Path(options.get("index_dir") or folders.artifacts / FOLDER)
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
    info = read_index_info(index_dir)
    if not Path(checkpoint).is_file() or "checkpoint_sha256" not in info:
        return  # load_model names a missing checkpoint; an index without info cannot be checked
    if file_sha256(checkpoint) != info["checkpoint_sha256"]:
        raise UserError(
            f"The index in {index_dir} was built with another checkpoint than {checkpoint}; "
            f"materialize embeddings and faiss_index again (imgcls index), or pass the "
            f"checkpoint it was built from ({info.get('checkpoint')})."
        )


def _print_predictions(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if row["error"]:
            print(f"{row['image_path']}: ERROR {row['error']}")
            continue
        print(f"{row['image_path']}: {row['predicted_class']} (confidence {row['confidence']:.2f})")
        for rank, n in enumerate(row["neighbours"][:5], start=1):
            print(f"    {rank}. {n['class_name']:<20} d={n['distance']:.4f}  {n['image_path']}")


def _write_predictions(path: Path, rows: list[dict[str, Any]]) -> None:
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

"""``imgcls predict``: classify new photos from the saved index (``<artifacts>/index``), without
Dagster and without re-reading the training photos."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imgcls_pipeline.cli.flags import read_command_line
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.folders import Folders
from imgcls_pipeline.core.search.index import (
    FOLDER,
    check_index_matches,
    gallery_flip_tta,
    load_index,
)
from imgcls_pipeline.core.search.inference import classify, expand_inputs, load_model
from imgcls_pipeline.core.search.predictions_store import (
    check_output_path,
    prediction_rows,
    write_predictions,
)
from imgcls_pipeline.core.training.checkpoint import BEST


def run(command: str, tokens: Sequence[str]) -> int:
    line = read_command_line(tokens, command)
    options, config, positional = line.options, line.config, line.positional
    if not positional:
        raise UserError(
            "Name one or more photos or folders to classify, e.g. "
            "`imgcls predict --checkpoint ./checkpoints/best_model.pt photo.jpg`."
        )
    output = check_output_path(options["output"]) if "output" in options else None
    folders = Folders.from_env(artifacts_dir=options.get("artifacts_dir"))
    checkpoint = options.get("checkpoint") or str(folders.checkpoints / BEST)
    index_dir = Path(options.get("index_dir") or folders.artifacts / FOLDER)
    index, gallery = load_index(index_dir)
    check_index_matches(index_dir, checkpoint)
    loaded = load_model(checkpoint)
    inputs = expand_inputs(positional)
    if not inputs:
        raise UserError(f"No photos found in {', '.join(positional)}.")
    predictions = classify(
        loaded,
        index,
        gallery,
        inputs,
        top_k=config.evaluation.top_k,
        # Queries are embedded as the gallery was, whatever --flip_tta says: the index decides.
        flip_tta=gallery_flip_tta(index_dir),
        rerank=config.evaluation,
    )
    rows = prediction_rows(predictions)
    _print_predictions(rows)
    if output is not None:
        write_predictions(output, rows)
        print(f"written to {output}", file=sys.stderr)
    return 0 if all(p.error is None for p in predictions) else 1


def _print_predictions(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if row["error"]:
            print(f"{row['image_path']}: ERROR {row['error']}")
            continue
        print(f"{row['image_path']}: {row['predicted_class']} (confidence {row['confidence']:.2f})")
        for rank, n in enumerate(row["neighbours"][:5], start=1):
            print(f"    {rank}. {n['class_name']:<20} d={n['distance']:.4f}  {n['image_path']}")

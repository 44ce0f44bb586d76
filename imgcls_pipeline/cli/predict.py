"""``imgcls predict``: classify new photos from the saved index (``<artifacts>/index``), without
Dagster and without re-reading the training photos. Inputs, checkpoint and index are checked
before torch is imported, so a mistake is reported at once."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imgcls_pipeline.cli.flags import read_command_line
from imgcls_pipeline.cli.preflight import check_checkpoint
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.folders import Folders
from imgcls_pipeline.core.search.index import (
    FOLDER,
    GALLERY_FILE,
    INDEX_FILE,
    check_index_matches,
    gallery_flip_tta,
    load_index,
)
from imgcls_pipeline.core.search.photo_inputs import find_photos
from imgcls_pipeline.core.search.predictions_store import (
    UNKNOWN,
    check_output_path,
    prediction_rows,
    write_predictions,
)
from imgcls_pipeline.core.training.checkpoint import BEST

NEIGHBOURS_SHOWN = 5


def run(command: str, tokens: Sequence[str]) -> int:
    line = read_command_line(tokens, command)
    options, config, positional = line.options, line.config, line.positional
    if not positional:
        raise UserError(
            "Name one or more photos or folders to classify, e.g. "
            "`imgcls predict --checkpoint ./checkpoints/best_model.pt photo.jpg`."
        )
    output = check_output_path(options["output"]) if "output" in options else None
    threshold = open_set_threshold(options.get("open_set_threshold"))
    folders = Folders.from_env(
        artifacts_dir=options.get("artifacts_dir"), checkpoint_dir=options.get("checkpoint_dir")
    )
    checkpoint = Path(options.get("checkpoint") or folders.checkpoints / BEST)
    index_dir = Path(options.get("index_dir") or folders.artifacts / FOLDER)
    check_checkpoint(checkpoint, "--checkpoint FILE")
    inputs = find_photos(positional)
    if inputs.skipped:
        shown = ", ".join(str(p) for p in inputs.skipped[:3])
        more = f" and {len(inputs.skipped) - 3} more" if len(inputs.skipped) > 3 else ""
        print(
            f"skipped {len(inputs.skipped)} file(s) that are not photos by their extension: "
            f"{shown}{more}",
            file=sys.stderr,
        )
    if not inputs.photos:
        raise UserError(
            f"No photos found in {', '.join(positional)}: name image files (.jpg, .png, ...) "
            "or folders holding them."
        )
    check_index_dir(index_dir)
    index, gallery = load_index(index_dir)
    check_index_matches(index_dir, checkpoint, index_flag="--index_dir")
    from imgcls_pipeline.core.search import inference  # torch: only once the checks have passed

    loaded = inference.load_model(checkpoint)
    predictions = inference.classify(
        loaded,
        index,
        gallery,
        inputs.photos,
        top_k=config.evaluation.top_k,
        batch_size=config.evaluation.embedding_batch_size,
        # Queries are embedded as the gallery was, whatever --flip_tta says: the index decides.
        flip_tta=gallery_flip_tta(index_dir),
        rerank=config.evaluation,
        open_set_threshold=threshold,
    )
    rows = prediction_rows(predictions)
    _print_predictions(rows)
    if output is not None:
        write_predictions(output, rows)
        print(f"written to {output}", file=sys.stderr)
    return 0 if all(p.error is None for p in predictions) else 1


def open_set_threshold(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not -1.0 <= value <= 1.0:
        raise UserError(
            f"--open_set_threshold takes a cosine similarity between -1 and 1 (e.g. 0.5), "
            f"not '{text}'."
        )
    return value


def check_index_dir(index_dir: Path) -> None:
    missing = [name for name in (INDEX_FILE, GALLERY_FILE) if not (index_dir / name).is_file()]
    if missing:
        raise UserError(
            f"No gallery index in {index_dir} ({', '.join(missing)} missing): run `imgcls index` "
            f"first, or pass --index_dir DIR holding {INDEX_FILE} and {GALLERY_FILE}."
        )


def _print_predictions(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if row["error"]:
            print(f"{row['image_path']}: ERROR {row['error']}")
            continue
        if row["predicted_class"] == UNKNOWN and row["neighbours"]:
            # The vote's confidence belongs to the class that was turned down: not shown here.
            nearest = row["neighbours"][0]["similarity"]
            print(
                f"{row['image_path']}: {UNKNOWN} (nearest similarity {nearest:.4f}, "
                "below --open_set_threshold)"
            )
        else:
            print(
                f"{row['image_path']}: {row['predicted_class']} "
                f"(confidence {row['confidence']:.2f})"
            )
        for rank, n in enumerate(row["neighbours"][:NEIGHBOURS_SHOWN], start=1):
            print(
                f"    {rank}. {n['class_name']:<20} similarity {n['similarity']:.4f}  "
                f"{n['image_path']}"
            )

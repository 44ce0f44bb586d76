"""``imgcls predict``: classify new photos with the served model and its bundle's index, without
Dagster and without re-reading the training photos. Inputs, model and index are checked (the
model's SHA-256 against the bundle's) before torch is imported, so a mistake is reported at once
and a model never searches an index of another model's embeddings."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imgcls_pipeline.cli.flags import read_command_line
from imgcls_pipeline.cli.preflight import check_checkpoint
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.folders import Folders
from imgcls_pipeline.core.lifecycle.bundle_files import (
    Bundle,
    check_dimension,
    check_matches,
    served_bundle,
    served_version,
)
from imgcls_pipeline.core.lifecycle.registry import read_version
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
            "`imgcls predict photo.jpg more_photos/`."
        )
    output = check_output_path(options["output"]) if "output" in options else None
    threshold = open_set_threshold(options.get("open_set_threshold"))
    folders = Folders.from_env(
        artifacts_dir=options.get("artifacts_dir"),
        checkpoint_dir=options.get("checkpoint_dir"),
        models_dir=options.get("models_dir"),
    )
    checkpoint, index_dir, bundle = model_and_index(options, folders)
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
    if bundle is not None:
        check_matches(bundle, checkpoint)
    else:
        check_index_matches(index_dir, checkpoint, index_flag="--index_dir")
    from imgcls_pipeline.core.search import inference  # torch: only once the checks have passed

    loaded = inference.load_model(checkpoint)
    # An index without info.json (made by hand, or by an old version) is not checked above.
    check_dimension(index_dir, index.d, checkpoint, loaded.model.embedding_dim)
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


def model_and_index(options: dict[str, str], folders: Folders) -> tuple[Path, Path, Bundle | None]:
    """(model, index folder, served bundle or None): by default the served bundle, resolved once,
    and its model version; ``--checkpoint`` and ``--index_dir`` replace either. A project with no
    served bundle uses best_model.pt and ``<artifacts>/index`` as before model versions."""
    bundle = None if "index_dir" in options else served_bundle(folders.artifacts)
    if bundle is not None:
        index_dir = bundle.part(FOLDER)
        model = read_version(folders.models, bundle.model_version).weights
    else:
        index_dir = Path(options.get("index_dir") or folders.artifacts / FOLDER)
        served = served_version(folders.artifacts, folders.models)
        model = served.weights if served is not None else folders.checkpoints / BEST
    return Path(options.get("checkpoint") or model), index_dir, bundle


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

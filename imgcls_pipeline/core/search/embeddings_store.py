"""The embeddings on disk: ``<split>.npy`` for each split and ``info.json`` beside them.

``<split>.npy`` is float32 with unit rows; row i embeds row i of ``splits/<split>.csv``.
``info.json`` says what they were made from (``inputs``: the checkpoint's and each split table's
SHA-256, and ``flip_tta: "true"`` when made with flip test-time augmentation) and is written last and removed before any ``.npy`` is rewritten, so a folder whose
``info.json`` names today's inputs holds embeddings of exactly those inputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from imgcls_pipeline.core.atomic import write_atomic, write_text_atomic
from imgcls_pipeline.core.data.split_files import split_path
from imgcls_pipeline.core.data.splitting import SPLITS
from imgcls_pipeline.core.errors import UserError, describe
from imgcls_pipeline.core.hashing import file_sha256
from imgcls_pipeline.core.tables import read_json_object

FOLDER = "embeddings"  # under the artifacts folder
INFO_FILE = "info.json"
REMEDY = "materialize the embeddings asset (or run `imgcls index`) again"


@dataclass(frozen=True)
class EmbeddingsInfo:
    inputs: dict[str, str]  # checkpoint_sha256 and one SHA-256 per split table
    checkpoint: str
    epoch: int
    backbone: str
    image_size: int
    rows: dict[str, int]


def inputs_signature(
    checkpoint: Path, splits_dir: Path, *, flip_tta: bool = False
) -> dict[str, str]:
    """What the embeddings depend on: the checkpoint's and each split table's bytes, and
    ``flip_tta`` when it is on (absent when off, so folders written before it stay current)."""
    signature = {"checkpoint_sha256": file_sha256(checkpoint)}
    for split in SPLITS:
        signature[split] = file_sha256(split_path(splits_dir, split))
    if flip_tta:
        signature["flip_tta"] = "true"
    return signature


def is_current(folder: str | os.PathLike[str], inputs: Mapping[str, str]) -> bool:
    """Every split's ``.npy`` is there and ``info.json`` says it was made from ``inputs``."""
    folder = Path(folder)
    if not all((folder / f"{split}.npy").is_file() for split in SPLITS):
        return False
    try:
        return read_info(folder).inputs == dict(inputs)
    except UserError:  # missing or unreadable: recomputing rewrites it
        return False


def write_embeddings(folder: str | os.PathLike[str], split: str, matrix: np.ndarray) -> None:
    folder = Path(folder)
    (folder / INFO_FILE).unlink(missing_ok=True)  # until write_info, the folder claims nothing
    write_atomic(folder / f"{split}.npy", lambda handle: np.save(handle, matrix))


def write_info(folder: str | os.PathLike[str], info: EmbeddingsInfo) -> None:
    write_text_atomic(Path(folder) / INFO_FILE, json.dumps(asdict(info), indent=2))


def read_info(folder: str | os.PathLike[str]) -> EmbeddingsInfo:
    path = Path(folder) / INFO_FILE
    if not path.is_file():
        raise UserError(f"No embeddings info at {path}; {REMEDY}.")
    raw = read_json_object(path, what="embeddings info file", remedy=REMEDY)
    missing = [f.name for f in fields(EmbeddingsInfo) if f.name not in raw]
    if missing:
        raise UserError(f"{path} lacks the key(s) {', '.join(missing)}; {REMEDY}.")
    return EmbeddingsInfo(**{f.name: raw[f.name] for f in fields(EmbeddingsInfo)})


def read_embeddings(folder: str | os.PathLike[str], split: str, *, rows: int) -> np.ndarray:
    """The ``(rows, D)`` embeddings of ``split``; a missing, unreadable or stale file (another
    row count than the split table's ``rows``) is a UserError naming it."""
    path = Path(folder) / f"{split}.npy"
    if not path.is_file():
        raise UserError(f"No {split} embeddings at {path}; {REMEDY}.")
    try:
        matrix = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UserError(
            f"{path} is not a readable NumPy file ({describe(error)}); {REMEDY}."
        ) from None
    if len(matrix) != rows:
        raise UserError(
            f"{path} has {len(matrix)} rows but {split}.csv has {rows}, so they come from "
            f"different splits; {REMEDY}."
        )
    return matrix

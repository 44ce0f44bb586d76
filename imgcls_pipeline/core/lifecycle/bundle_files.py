"""Index bundles on disk, and which one is served: reading only (no torch, no pandas), so that
``imgcls predict`` and ``imgcls models`` check them before anything slow is imported.

``<artifacts>/bundles/<bundle_id>/`` holds ``embeddings/`` (as ``search.embeddings_store`` writes
them, plus ``<split>_photos.csv``: each row's photo size and mtime, which the new-photos track
reuses rows by), ``index/`` (``search.index``), ``evaluation/`` (``search.evaluation_store``) and
``bundle.json``, written last. ``<artifacts>/served`` is a relative symlink to the served bundle;
``<artifacts>/previous`` to the one served before it. ``<artifacts>/{embeddings,index,evaluation}``
are relative symlinks into ``served/``, so the documented paths keep working.

A reader resolves ``served`` once (``served_bundle``) and reads everything from that bundle's own
folder: a switch in between cannot give it one bundle's index with another's gallery table.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.hashing import file_sha256
from imgcls_pipeline.core.tables import read_json_object

if TYPE_CHECKING:
    from imgcls_pipeline.core.lifecycle.registry import ModelVersion

BUNDLES = "bundles"
SERVED = "served"
PREVIOUS = "previous"
BUNDLE_FILE = "bundle.json"
# The folders of a bundle, each also linked at the artifacts folder's top as before bundles.
PARTS = ("embeddings", "index", "evaluation")
# Where the plain folders of a project made before bundles are moved on its first switch.
PRE_LIFECYCLE = "pre-lifecycle"

# core.data.splitting.SPLITS, without importing pandas: `imgcls models` stays fast.
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Bundle:
    folder: Path
    bundle_id: str
    model_version: str
    checkpoint_sha256: str
    splits_fingerprint: str  # train.csv, val.csv and test.csv it embeds (splits_fingerprint())
    flip_tta: bool
    index_type: str
    dimension: int
    created: str = ""
    # <host>-<pid> of the process that built it: until that process ends, a bundle not yet served
    # is its to serve, and clean-up leaves it alone.
    builder: str = ""

    def part(self, name: str) -> Path:
        return self.folder / name

    def record(self) -> dict[str, Any]:
        """bundle.json's content."""
        return {k: v for k, v in asdict(self).items() if k != "folder"}


def splits_fingerprint(splits_dir: Path) -> str:
    """SHA-256 over the bytes of every split table: a bundle embeds exactly these."""
    digest = hashlib.sha256()
    for split in SPLITS:
        path = Path(splits_dir) / f"{split}.csv"
        digest.update(file_sha256(path).encode() if path.is_file() else b"-")
    return digest.hexdigest()


def write_bundle_file(folder: Path, bundle: Bundle) -> None:
    from imgcls_pipeline.core.atomic import write_text_atomic

    write_text_atomic(folder / BUNDLE_FILE, json.dumps(bundle.record(), indent=2))


def read_bundle(folder: Path) -> Bundle:
    raw = read_json_object(
        folder / BUNDLE_FILE,
        what="bundle file",
        remedy="serve a model again with `imgcls promote VERSION` (`imgcls models` lists them)",
    )
    try:
        return Bundle(folder=folder, **raw)
    except TypeError:
        raise UserError(
            f"{folder / BUNDLE_FILE} is not a bundle file of this version; serve a model again "
            "with `imgcls promote VERSION`."
        ) from None


def served_bundle(artifacts: Path) -> Bundle | None:
    """The served bundle, resolved once; None when nothing is served (a project made before
    bundles included: ``has_plain_folders`` tells that apart)."""
    link = Path(artifacts) / SERVED
    if not link.is_symlink():
        return None
    folder = Path(artifacts) / os.readlink(link)
    if not (folder / BUNDLE_FILE).is_file():
        raise UserError(
            f"{link} points at {folder}, which holds no complete bundle; serve a model again "
            "with `imgcls promote VERSION` (`imgcls models` lists them)."
        )
    return read_bundle(folder)


def previous_bundle_id(artifacts: Path) -> str | None:
    link = Path(artifacts) / PREVIOUS
    return Path(os.readlink(link)).name if link.is_symlink() else None


def served_version(artifacts: Path, models_dir: Path) -> ModelVersion | None:
    """The served model: the served bundle's ``model_version`` in the models folder."""
    from imgcls_pipeline.core.lifecycle.registry import read_version

    bundle = served_bundle(artifacts)
    return None if bundle is None else read_version(models_dir, bundle.model_version)


def has_plain_folders(artifacts: Path) -> bool:
    """A project made before bundles: ``index/`` is a folder of its own, not a link."""
    index = Path(artifacts) / "index"
    return index.is_dir() and not index.is_symlink()


def check_matches(bundle: Bundle, checkpoint: Path) -> None:
    """``checkpoint`` must be the model the bundle's embeddings were made with, or every distance
    is meaningless: one sentence naming both and the way out otherwise."""
    sha = file_sha256(checkpoint)
    if sha != bundle.checkpoint_sha256:
        raise UserError(
            f"The model {checkpoint} (sha256 {sha[:12]}) is not the one the bundle "
            f"{bundle.folder} was built with ({bundle.model_version}, sha256 "
            f"{bundle.checkpoint_sha256[:12]}, embedding size {bundle.dimension}); drop "
            f"--checkpoint to use the served model, or pass --index_dir with an index built from "
            f"{checkpoint}."
        )


def check_dimension(index_folder: Path, dimension: int, checkpoint: Path, model_dim: int) -> None:
    """The index's vectors and the model's embeddings must have one size (a search otherwise
    fails deep inside Faiss)."""
    if dimension != model_dim:
        raise UserError(
            f"The index in {index_folder} holds {dimension}-dimensional vectors but the model "
            f"{checkpoint} embeds {model_dim}; rebuild the index with that model (`imgcls "
            f"promote VERSION` for a registered one) or pass the model it was built with."
        )


def find_bundle(
    artifacts: Path, version: ModelVersion, fingerprint: str, **same: Any
) -> Bundle | None:
    """A complete bundle of ``version`` for the splits ``fingerprint`` with the ``same`` settings
    (flip_tta, index_type), newest first; None when there is none."""
    root = Path(artifacts) / BUNDLES
    if not root.is_dir():
        return None
    found = []
    for folder in root.iterdir():
        if folder.name.startswith(".") or not (folder / BUNDLE_FILE).is_file():
            continue
        try:
            bundle = read_bundle(folder)
        except UserError:
            continue
        wanted = (bundle.checkpoint_sha256, bundle.splits_fingerprint)
        if wanted == (version.checkpoint_sha256, fingerprint) and all(
            getattr(bundle, name) == value for name, value in same.items()
        ):
            found.append(bundle)
    return max(found, key=lambda b: b.created, default=None)

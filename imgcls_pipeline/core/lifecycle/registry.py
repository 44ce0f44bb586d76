"""Model versions: ``models/<version>/``, one immutable folder per finished training run.

A version is ``v0001``, ``v0002``, … (the next number is taken under the models folder's lock). Its
folder is built under a temporary name and renamed into place, so a reader sees it complete or not
at all, and nothing writes into it afterwards:

- ``model.pt``: the inference-only weights (``best_model.pt`` of the run; loadable with
  ``search.inference.load_model``)
- ``version.json``: version, created, checkpoint_sha256 (of model.pt), backbone, embedding_dim,
  image_size, class_names, splits_fingerprint (train.csv and val.csv the run trained on),
  val_recall_at_1 (the best epoch's, as training measured it), best_epoch, epochs, split_rows,
  settings (the run's resolved settings)
- ``metrics.csv``, ``training_curve.png``, ``confusion_matrix.png``: copied when the run has them
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgcls_pipeline.core.atomic import write_text_atomic
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.hashing import file_sha256
from imgcls_pipeline.core.lifecycle.bundle_files import SPLITS
from imgcls_pipeline.core.lifecycle.folders import remove_orphan_folders, temp_folder
from imgcls_pipeline.core.locks import FolderLock
from imgcls_pipeline.core.tables import read_json_object

WEIGHTS = "model.pt"
VERSION_FILE = "version.json"
COPIED_FILES = ("metrics.csv", "training_curve.png", "confusion_matrix.png")
LOCK_PURPOSE = "models folder"
_NAME = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True)
class ModelVersion:
    version: str  # "v0003"
    folder: Path  # models/v0003
    created: str  # ISO 8601, UTC
    checkpoint_sha256: str  # of model.pt
    splits_fingerprint: str  # train.csv + val.csv the run trained on
    class_names: list[str]
    val_recall_at_1: float | None  # the best epoch's, as training measured it
    settings: dict[str, Any]
    backbone: str = ""
    embedding_dim: int = 0
    image_size: int = 0
    best_epoch: int | None = None
    epochs: int = 0
    split_rows: dict[str, int] = field(default_factory=dict)

    @property
    def weights(self) -> Path:
        return self.folder / WEIGHTS

    @property
    def number(self) -> int:
        return version_number(self.version)


def version_name(number: int) -> str:
    return f"v{number:04d}"


def version_number(name: str) -> int:
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"not a version name: {name!r}")
    return int(match[1])


def register_version(checkpoint_dir: Path, models_dir: Path, splits_dir: Path) -> ModelVersion:
    """Register the run in ``checkpoint_dir`` (its ``best_model.pt``) as the next version; the
    same weights registered before return that version instead of a copy."""
    from imgcls_pipeline.core.training import checkpoint as ckpt  # torch: only to register

    best = Path(checkpoint_dir) / ckpt.BEST
    checkpoint = ckpt.read_checkpoint(best)
    with FolderLock(models_dir, LOCK_PURPOSE):
        remove_orphan_folders(Path(models_dir))
        already = {v.checkpoint_sha256: v for v in list_versions(models_dir)}
        build = temp_folder(Path(models_dir), "version")
        try:
            weights = build / WEIGHTS
            if any(key in checkpoint for key in ckpt.RESUME_STATE_KEYS):
                ckpt.save_checkpoint(weights, ckpt.inference_only(checkpoint))
            else:  # best_model.pt is inference-only already: the same bytes, the same hash
                shutil.copyfile(best, weights)
            sha = file_sha256(weights)
            if sha in already:
                return already[sha]
            for name in COPIED_FILES:
                if (Path(checkpoint_dir) / name).is_file():
                    shutil.copyfile(Path(checkpoint_dir) / name, build / name)
            numbers = [v.number for v in already.values()]
            name = version_name(max(numbers, default=0) + 1)
            record = _version_record(name, sha, checkpoint, splits_dir)
            record["epochs"] = epochs_run(build / "metrics.csv", record["epochs"])
            write_text_atomic(build / VERSION_FILE, json.dumps(record, indent=2))
            for path in build.iterdir():
                path.chmod(0o444)  # immutable: a version's files are never rewritten
            build.rename(Path(models_dir) / name)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return read_version(models_dir, name)


def _version_record(
    name: str, sha: str, checkpoint: dict[str, Any], splits_dir: Path
) -> dict[str, Any]:
    from imgcls_pipeline.core.training.checkpoint import splits_fingerprint

    fingerprint = checkpoint.get("splits_fingerprint") or splits_fingerprint(splits_dir)
    best = checkpoint.get("best_val_recall@1")
    return {
        "version": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint_sha256": sha,
        "backbone": checkpoint.get("backbone", ""),
        "embedding_dim": int(checkpoint.get("embedding_dim", 0)),
        "image_size": int(checkpoint.get("image_size", 0)),
        "class_names": list(checkpoint.get("classes", [])),
        "splits_fingerprint": fingerprint,
        "val_recall_at_1": float(best) if best is not None and best >= 0 else None,
        "best_epoch": checkpoint.get("best_epoch"),
        "epochs": int(checkpoint.get("epoch", 0)),
        "split_rows": _split_rows(splits_dir) if _same_splits(fingerprint, splits_dir) else {},
        "settings": checkpoint.get("config", {}),
    }


def epochs_run(metrics: Path, fallback: int) -> int:
    """How many epochs the run trained: the last epoch in its ``metrics.csv`` (``best_model.pt``
    only knows its own, the best, epoch); ``fallback`` when the file is missing or unreadable."""
    import csv

    try:
        with open(metrics, newline="", encoding="utf-8") as handle:
            epochs = [int(row["epoch"]) for row in csv.DictReader(handle) if row.get("epoch")]
    except (OSError, ValueError, KeyError, csv.Error):
        return fallback
    return max(epochs, default=fallback)


def _same_splits(fingerprint: str, splits_dir: Path) -> bool:
    from imgcls_pipeline.core.training.checkpoint import splits_fingerprint

    try:
        return splits_fingerprint(splits_dir) == fingerprint
    except UserError:
        return False


def _split_rows(splits_dir: Path) -> dict[str, int]:
    """Photos per split the run trained on: how much is new later (the re-training rule)."""
    rows = {}
    for split in SPLITS:
        path = Path(splits_dir) / f"{split}.csv"
        if path.is_file():
            with open(path, encoding="utf-8") as handle:
                rows[split] = max(sum(1 for _ in handle) - 1, 0)
    return rows


def list_versions(models_dir: Path) -> list[ModelVersion]:
    """Every registered version, oldest first (none for a missing folder)."""
    folder = Path(models_dir)
    if not folder.is_dir():
        return []
    names = [p.name for p in folder.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return [read_version(folder, name) for name in sorted(names, key=version_number)]


def read_version(models_dir: Path, version: str) -> ModelVersion:
    """The version named ``version``; an unknown name is a UserError listing the known ones."""
    folder = Path(models_dir) / version
    path = folder / VERSION_FILE
    if not _NAME.match(version) or not path.is_file():
        known = [
            p.name for p in sorted(Path(models_dir).glob("v*")) if (p / VERSION_FILE).is_file()
        ]
        listed = (
            f"the known versions are {', '.join(known)}" if known else "it holds no version yet"
        )
        raise UserError(
            f"There is no model version '{version}' in {models_dir} ({listed}); "
            "`imgcls models` lists them."
        )
    raw = read_json_object(
        path,
        what="model version file",
        remedy=f"restore {folder} from a backup or remove it",
    )
    try:
        return ModelVersion(
            version=raw["version"],
            folder=folder,
            created=raw["created"],
            checkpoint_sha256=raw["checkpoint_sha256"],
            splits_fingerprint=raw["splits_fingerprint"],
            class_names=list(raw["class_names"]),
            val_recall_at_1=raw.get("val_recall_at_1"),
            settings=dict(raw.get("settings", {})),
            backbone=raw.get("backbone", ""),
            embedding_dim=int(raw.get("embedding_dim", 0)),
            image_size=int(raw.get("image_size", 0)),
            best_epoch=raw.get("best_epoch"),
            epochs=int(raw.get("epochs", 0)),
            split_rows=dict(raw.get("split_rows", {})),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(
            f"{path} lacks {error} or has a bad value; restore {folder} from a backup or remove it."
        ) from None

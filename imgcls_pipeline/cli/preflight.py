"""Checks of folders, tables and weights before a command starts Dagster or imports torch, so a
user mistake is one sentence within a second or two, not a stack trace after a slow start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgcls_pipeline.core.data.manifest import LAYOUT_HELP, check_data_dir
from imgcls_pipeline.core.data.split_files import read_splits
from imgcls_pipeline.core.data.splitting import SPLITS
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.folders import FolderPaths
from imgcls_pipeline.core.lifecycle.bundle_files import served_bundle
from imgcls_pipeline.core.locks import refuse_if_locked
from imgcls_pipeline.core.settings import PipelineConfig
from imgcls_pipeline.core.training.hub import check_weights_available


def check_command(command: str, config: PipelineConfig, folders: FolderPaths) -> None:
    """What ``imgcls COMMAND`` needs before its Dagster job starts."""
    if command in ("train", "pipeline"):
        # Now, not in the training step: with a shared Dagster instance that step first waits
        # for the gpu pool, which the run writing this folder holds (possibly for hours).
        refuse_if_locked(folders.checkpoints, "checkpoint folder")
    if command in ("train", "index"):  # their input is the split tables: name those first
        check_split_tables(folders.splits, SPLITS if command == "index" else ("train", "val"))
    check_data_folder(folders.data)
    if command in ("train", "pipeline"):
        model = config.model
        check_weights_available(model.backbone, model.pretrained, model.pretrained_path)
    if command == "index":
        check_served_model(folders)


def check_data_folder(data: Path) -> None:
    check_data_dir(data)
    entries = list(data.iterdir())
    if not any(entry.is_dir() for entry in entries):
        state = "has no class folders" if entries else "is empty"
        raise UserError(f"Data folder '{data}' {state}: {LAYOUT_HELP}.")


def check_split_tables(splits: Path, names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Each table is readable and has its columns (``read_splits``' checks, one read of the
    folder); train and val have rows, since training picks its best epoch on val and the gallery
    is train. The tables, by name, for a caller that goes on to use them."""
    tables = read_splits(splits, names)
    for name, table in tables.items():
        if name in ("train", "val") and table.empty:
            raise UserError(
                f"Split file '{splits / f'{name}.csv'}' has no rows: run `imgcls split` with "
                f"{name}_ratio above 0, or add photos to the data folder."
            )
    return tables


def check_served_model(folders: FolderPaths) -> None:
    """``imgcls index`` (re)builds the served model's bundle: a model must be served."""
    if served_bundle(folders.artifacts) is None:
        raise UserError(
            f"No model is served from {folders.artifacts}: run `imgcls train` (its gate serves the "
            "first model that passes the floor) or `imgcls promote VERSION`, or pass "
            "--artifacts_dir DIR of a project that serves one."
        )


def check_checkpoint(path: Path, flag: str) -> None:
    """``flag``: how the command is told another checkpoint (``--checkpoint FILE``, ...)."""
    if not path.is_file():
        raise UserError(
            f"No trained model at {path}: run `imgcls train` first, or pass {flag} "
            "to use another one."
        )

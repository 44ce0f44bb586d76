"""Deployment settings: where the photos, splits, checkpoints and artifacts live."""

from __future__ import annotations

import dataclasses

import dagster as dg

from imgcls_pipeline.core.folders import DEFAULT_MODELS_DIR, FolderPaths, Folders


class PipelinePaths(FolderPaths, dg.ConfigurableResource):
    """Folders of one deployment; relative paths are relative to where Dagster was started."""

    data_dir: str
    splits_dir: str
    checkpoint_dir: str
    artifacts_dir: str
    models_dir: str = DEFAULT_MODELS_DIR

    @classmethod
    def from_env(cls, **overrides: str | None) -> PipelinePaths:
        """Explicit overrides, else ``IMGCLS_*_DIR`` environment variables, else the project's
        ``imgcls.yaml``, else defaults (``Folders.from_env``)."""
        return cls(**dataclasses.asdict(Folders.from_env(**overrides)))

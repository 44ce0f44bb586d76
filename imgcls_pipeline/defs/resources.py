"""Deployment settings: where the photos, splits, checkpoints and artifacts live."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

FOLDER_ENV_VARS = {
    "data_dir": ("IMGCLS_DATA_DIR", "./data"),
    "splits_dir": ("IMGCLS_SPLITS_DIR", "./splits"),
    "checkpoint_dir": ("IMGCLS_CHECKPOINT_DIR", "./checkpoints"),
    "artifacts_dir": ("IMGCLS_ARTIFACTS_DIR", "./artifacts"),
}


class PipelinePaths(dg.ConfigurableResource):
    """Folders of one deployment; relative paths are relative to where Dagster was started."""

    data_dir: str
    splits_dir: str
    checkpoint_dir: str
    artifacts_dir: str

    @classmethod
    def from_env(cls, **overrides: str | None) -> PipelinePaths:
        """Folders from ``IMGCLS_*_DIR`` environment variables, defaults, or explicit overrides."""
        values = {
            name: overrides.get(name) or os.environ.get(env_var, default)
            for name, (env_var, default) in FOLDER_ENV_VARS.items()
        }
        return cls(**values)

    @property
    def data(self) -> Path:
        return Path(self.data_dir)

    @property
    def splits(self) -> Path:
        return Path(self.splits_dir)

    @property
    def checkpoints(self) -> Path:
        return Path(self.checkpoint_dir)

    @property
    def artifacts(self) -> Path:
        return Path(self.artifacts_dir)

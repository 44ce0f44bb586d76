"""Where one deployment keeps its photos, splits, checkpoints, artifacts and model versions.

Read by the Dagster resource (``defs/resources.py``) and by the commands that work without Dagster
(``imgcls evaluate`` / ``predict``), so both find the same folders: a flag first, then an
``IMGCLS_*_DIR`` environment variable, then the project's ``imgcls.yaml``, then ``./data`` ….
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imgcls_pipeline.core.project_settings import read_project_settings

FOLDER_ENV_VARS = {
    "data_dir": ("IMGCLS_DATA_DIR", "./data"),
    "splits_dir": ("IMGCLS_SPLITS_DIR", "./splits"),
    "checkpoint_dir": ("IMGCLS_CHECKPOINT_DIR", "./checkpoints"),
    "artifacts_dir": ("IMGCLS_ARTIFACTS_DIR", "./artifacts"),
    "models_dir": ("IMGCLS_MODELS_DIR", "./models"),
}
DEFAULT_MODELS_DIR = FOLDER_ENV_VARS["models_dir"][1]


class FolderPaths:
    """The folders as paths, for a class holding them as ``*_dir`` strings."""

    data_dir: str
    splits_dir: str
    checkpoint_dir: str
    artifacts_dir: str
    models_dir: str

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

    @property
    def models(self) -> Path:
        return Path(self.models_dir)


@dataclass(frozen=True)
class Folders(FolderPaths):
    data_dir: str
    splits_dir: str
    checkpoint_dir: str
    artifacts_dir: str
    # A default, so that code naming the four older folders keeps working.
    models_dir: str = DEFAULT_MODELS_DIR

    @classmethod
    def from_env(cls, **overrides: str | None) -> Folders:
        """Explicit values first, then ``IMGCLS_*_DIR`` environment variables, then the project's
        ``imgcls.yaml`` (its relative paths are relative to its folder), then defaults; other
        relative paths stay relative to the current folder."""
        project = read_project_settings().folders
        return cls(
            **{
                name: overrides.get(name) or os.environ.get(env_var) or project.get(name, default)
                for name, (env_var, default) in FOLDER_ENV_VARS.items()
            }
        )

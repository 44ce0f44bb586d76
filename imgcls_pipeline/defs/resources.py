"""Deployment settings: where the photos, splits, checkpoints and artifacts live."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import dagster as dg

from imgcls_pipeline.core.errors import UserError, describe
from imgcls_pipeline.core.folders import DEFAULT_MODELS_DIR, FolderPaths, Folders
from imgcls_pipeline.core.training.launch_specs import TrainingLaunch


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


# A YAML file of TrainingLaunch settings (client, image, gpus_per_node, volumes, ...): how a
# deployment says where training runs (deploy/helm/values.yaml mounts one from a ConfigMap).
TRAINING_LAUNCH_FILE_ENV = "IMGCLS_TRAINING_LAUNCH_FILE"


class TrainingLauncher(TrainingLaunch, dg.ConfigurableResource):
    """Where the training asset runs training (``core/training/launch_specs.py``); a run can
    override any field in the launchpad (resources → training_launcher → config)."""

    @classmethod
    def from_env(cls) -> TrainingLauncher:
        """The settings in ``$IMGCLS_TRAINING_LAUNCH_FILE``, else local training."""
        path = os.environ.get(TRAINING_LAUNCH_FILE_ENV)
        if not path:
            return cls()
        values = _read_launch_file(Path(path))
        try:
            return cls(**values)
        except UserError as error:
            raise UserError(f"Training launch file {path}: {error}") from None

    def settings(self) -> TrainingLaunch:
        return TrainingLaunch.model_validate(self.model_dump())


def _read_launch_file(path: Path) -> dict:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise UserError(
            f"Training launch file {path} cannot be read ({describe(error)}); fix it or unset "
            f"{TRAINING_LAUNCH_FILE_ENV}."
        ) from None
    if not isinstance(raw, dict):
        raise UserError(
            f"Training launch file {path} must hold name: value lines, e.g. client: k8s."
        )
    return raw

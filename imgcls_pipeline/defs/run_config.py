"""The Dagster run config of each asset: the groups of ``core/settings.py`` it uses, as ``dg.Config``.

Each class inherits its fields, defaults, descriptions and constraints from the core models, so
the launchpad shows the same settings as the ``imgcls`` flags and rejects a bad value with the
same sentence. The run config stays flat: one key per setting under each asset.

A setting the project's ``imgcls.yaml`` sets is that field's default instead: "Materialize all"
(an empty run config) then runs with the project's settings, and the launchpad shows them. The
file is read when the code location loads, so "Reload" in the UI picks up an edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pydantic
from pydantic.fields import FieldInfo

from imgcls_pipeline.core import settings
from imgcls_pipeline.core.project_settings import read_project_settings
from imgcls_pipeline.core.settings import PipelineConfig


def with_defaults[C: type[dg.Config]](config_class: C, values: Mapping[str, Any]) -> C:
    """``config_class`` with the values of its settings found in ``values`` as their defaults
    (descriptions and constraints kept); the class itself when ``values`` sets none of them."""
    fields = {
        name: (
            field.annotation,
            FieldInfo.merge_field_infos(field, default=values[name], default_factory=None),
        )
        for name, field in config_class.model_fields.items()
        if name in values
    }
    if not fields:
        return config_class
    return pydantic.create_model(  # type: ignore[call-overload]
        config_class.__name__,
        __base__=config_class,
        __module__=config_class.__module__,
        __doc__=config_class.__doc__,
        **fields,
    )


# The project's imgcls.yaml, read once as the definitions load (a UI "Reload" loads them anew).
_PROJECT_SETTINGS = read_project_settings().settings


def project_defaults[C: type[dg.Config]](config_class: C) -> C:
    return with_defaults(config_class, _PROJECT_SETTINGS)


@project_defaults
class IdGroupsConfig(settings.PhotoSelection, dg.Config):
    pass


@project_defaults
class SplitsConfig(settings.SplitRatios, settings.SeedSetting, dg.Config):
    pass


@project_defaults
class TrainedCheckpointConfig(
    settings.ModelConfig,
    settings.TrainingConfig,
    settings.AugmentationConfig,
    settings.ImageSizeSetting,
    settings.SeedSetting,
    settings.RecallSetting,
    settings.ImageCacheSetting,
    dg.Config,
):
    # The image size is the checkpoint's own: a model is embedded at the size it was trained at.
    def pipeline_config(self) -> PipelineConfig:
        """The whole configuration the training process needs (validated by the same model)."""
        return PipelineConfig.from_flat(self.model_dump())


@project_defaults
class ImageCacheConfig(settings.ImageCacheSetting, settings.ImageSizeSetting, dg.Config):
    pass


@project_defaults
class EmbeddingsConfig(
    settings.EmbeddingBatchSetting, settings.FlipTtaSetting, settings.ImageCacheSetting, dg.Config
):
    pass


@project_defaults
class FaissIndexConfig(settings.IndexTypeSetting, dg.Config):
    pass


# Not "EvaluationConfig": that is the core's whole evaluation section, with more fields.
@project_defaults
class EvaluationRunConfig(
    settings.RecallSetting, settings.ReportSettings, settings.RerankSettings, dg.Config
):
    pass


class GateSettings(settings.Settings):
    """The gate's rule: the served model's score minus a tolerance, and the floor."""

    promotion_tolerance: float = settings.LifecycleSettings.model_fields["promotion_tolerance"]
    min_val_recall_at_1: float = settings.ReportSettings.model_fields["min_val_recall_at_1"]


# The gate scores each model on a bundle of its own, built as the search assets build theirs.
@project_defaults
class ServedModelConfig(
    GateSettings,
    settings.EmbeddingBatchSetting,
    settings.FlipTtaSetting,
    settings.IndexTypeSetting,
    settings.ImageCacheSetting,
    dg.Config,
):
    pass


def lifecycle_settings() -> settings.LifecycleSettings:
    """When the automation runs (settle window, cron, thresholds), from the project's imgcls.yaml
    as the definitions loaded it: a UI "Reload" picks up an edit."""
    fields = settings.LifecycleSettings.model_fields
    return settings.LifecycleSettings(
        **{name: value for name, value in _PROJECT_SETTINGS.items() if name in fields}
    )


ASSET_CONFIGS: dict[str, type[dg.Config]] = {
    "id_groups": IdGroupsConfig,
    "splits": SplitsConfig,
    "image_cache": ImageCacheConfig,
    "trained_checkpoint": TrainedCheckpointConfig,
    "served_model": ServedModelConfig,
    "embeddings": EmbeddingsConfig,
    "faiss_index": FaissIndexConfig,
    "evaluation": EvaluationRunConfig,
}


def run_config_for(config: PipelineConfig, asset_names: list[str]) -> dict[str, Any]:
    """Run config that makes each asset in ``asset_names`` see the settings of ``config``."""
    values = config.flat()
    ops = {
        name: {"config": {setting: values[setting] for setting in ASSET_CONFIGS[name].model_fields}}
        for name in asset_names
        if name in ASSET_CONFIGS
    }
    return {"ops": ops}

"""The Dagster run config of each asset: the groups of ``core/settings.py`` it uses, as ``dg.Config``.

Each class inherits its fields, defaults, descriptions and constraints from the core models, so
the launchpad shows the same settings as the ``imgcls`` flags and rejects a bad value with the
same sentence. The run config stays flat: one key per setting under each asset.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from imgcls_pipeline.core import settings
from imgcls_pipeline.core.settings import PipelineConfig


class IdGroupsConfig(settings.PhotoSelection, dg.Config):
    pass


class SplitsConfig(settings.SplitRatios, settings.SeedSetting, dg.Config):
    pass


class TrainedCheckpointConfig(
    settings.ModelConfig,
    settings.TrainingConfig,
    settings.AugmentationConfig,
    settings.ImageSizeSetting,
    settings.SeedSetting,
    settings.RecallSetting,
    dg.Config,
):
    # The image size is the checkpoint's own: a model is embedded at the size it was trained at.
    def pipeline_config(self) -> PipelineConfig:
        """The whole configuration the training process needs (validated by the same model)."""
        return PipelineConfig.from_flat(self.model_dump())


class EmbeddingsConfig(settings.EmbeddingBatchSetting, settings.FlipTtaSetting, dg.Config):
    pass


class FaissIndexConfig(settings.IndexTypeSetting, dg.Config):
    pass


# Not "EvaluationConfig": that is the core's whole evaluation section, with more fields.
class EvaluationRunConfig(
    settings.RecallSetting, settings.ReportSettings, settings.RerankSettings, dg.Config
):
    pass


ASSET_CONFIGS: dict[str, type[dg.Config]] = {
    "id_groups": IdGroupsConfig,
    "splits": SplitsConfig,
    "trained_checkpoint": TrainedCheckpointConfig,
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

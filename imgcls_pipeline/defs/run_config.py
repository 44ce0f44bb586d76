"""Dagster run config for each asset, generated from the dataclasses in ``imgcls_pipeline.core.settings``.

The settings are defined once (``config.py``); each asset declares which of them it uses, and the
``imgcls`` command turns a ``PipelineConfig`` into the run config of the assets it materializes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import dagster as dg
import pydantic

from imgcls_pipeline.core.settings import PipelineConfig, field_index, field_type, validate

_TRAINING_SECTIONS = ("model", "training", "augmentation")
_TRAINING_EXTRA = ("image_size", "seed", "recall_k_values")

ASSET_SETTINGS: dict[str, tuple[str, ...]] = {
    "id_groups": ("min_image_size", "class_names"),
    "splits": ("train_ratio", "val_ratio", "test_ratio", "seed"),
    "trained_checkpoint": tuple(
        name for name, (section, _) in field_index().items() if section in _TRAINING_SECTIONS
    )
    + _TRAINING_EXTRA,
    # The image size is the checkpoint's own: a model is embedded at the size it was trained at.
    "embeddings": ("embedding_batch_size",),
    "faiss_index": ("index_type",),
    "evaluation": ("recall_k_values", "top_k", "eval_splits", "min_val_recall_at_1"),
}


def _pydantic_field(name: str) -> tuple[Any, Any]:
    section, dc_field = field_index()[name]
    annotation = field_type(section, name)
    if dc_field.default_factory is not dataclasses.MISSING:
        return annotation, pydantic.Field(default_factory=dc_field.default_factory)
    return annotation, dc_field.default


def config_class(asset_name: str) -> type[dg.Config]:
    """A ``dg.Config`` subclass holding the settings ``asset_name`` uses, with the same defaults."""
    fields = {name: _pydantic_field(name) for name in ASSET_SETTINGS[asset_name]}
    class_name = "".join(part.title() for part in asset_name.split("_")) + "Config"
    return pydantic.create_model(class_name, __base__=dg.Config, **fields)


def to_pipeline_config(run_config: dg.Config) -> PipelineConfig:
    """Defaults everywhere, overridden by the asset's run config; validated."""
    config = PipelineConfig()
    index = field_index()
    for name, value in run_config.model_dump().items():
        section, _ = index[name]
        setattr(config if section is None else getattr(config, section), name, value)
    validate(config)
    return config


def run_config_for(config: PipelineConfig, asset_names: list[str]) -> dict[str, Any]:
    """Run config that makes each asset in ``asset_names`` see the settings of ``config``."""
    index = field_index()
    ops: dict[str, Any] = {}
    for asset_name in asset_names:
        if asset_name not in ASSET_SETTINGS:
            continue
        values = {}
        for name in ASSET_SETTINGS[asset_name]:
            section, _ = index[name]
            values[name] = getattr(config if section is None else getattr(config, section), name)
        ops[asset_name] = {"config": values}
    return {"ops": ops}


IdGroupsConfig = config_class("id_groups")
SplitsConfig = config_class("splits")

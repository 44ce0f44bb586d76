"""Every setting of the pipeline, defined once, with the original specification's names and defaults.

The models here are the only validation: the ``imgcls`` flags (``--field=value``, parsed in
``core/settings_sources.py``), a settings file, the Dagster run config of each asset (its
``dg.Config`` classes inherit the small models below, see ``defs/run_config.py``) and the training
process (``PipelineConfig.read_json``, the file ``write_json`` hands it) all go through them. A bad value is one ``UserError``
sentence naming the setting and what a valid value looks like.

Folders are not settings here: they are deployment settings (see ``core/folders.py``).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from imgcls_pipeline.core.atomic import write_text_atomic
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings_errors import did_you_mean, error_sentence
from imgcls_pipeline.core.tables import read_json_object

DEFAULT_BACKBONE = "tf_efficientnetv2_l.in21k_ft_in1k"
EVAL_SPLITS = ("val", "test")


class Settings(BaseModel):
    """A group of settings: unknown names are refused, a bad value is one UserError sentence."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="wrap")
    @classmethod
    def _one_sentence(cls, data: Any, handler: Any) -> Any:
        # UserError is not a ValueError, so pydantic lets it through untouched: the CLI prints it
        # as one line, and Dagster (which builds each asset's dg.Config from these models) shows
        # it as the step's failure instead of pydantic's multi-line report.
        try:
            return handler(data)
        except ValidationError as error:
            raise UserError(error_sentence(cls, error, data)) from None


# Small groups, so that each asset's run config is exactly the settings it uses (defs/run_config.py).


class ImageSizeSetting(Settings):
    image_size: int = Field(480, gt=0, description="Side in pixels photos are resized to.")


class ImageCacheSetting(Settings):
    # The rule of "auto" and the entry format: core/data/image_cache.py.
    image_cache: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Decode each photo once into artifacts/image_cache at about 1.15 × "
        "image_size: auto (when photos are at least twice that size), on or off.",
    )


class PhotoSelection(Settings):
    min_image_size: int = Field(
        224, ge=0, description="Photos with a shorter side below this many pixels are excluded."
    )
    class_names: list[str] | None = Field(
        None,
        min_length=1,
        description="Class folders to use, e.g. a,b; none for every folder.",
        examples=["cat,dog"],
    )


class SplitRatios(Settings):
    train_ratio: float = Field(0.70, ge=0, le=1, description="Share of IDs in train (the gallery).")
    val_ratio: float = Field(0.15, ge=0, le=1, description="Share of IDs in val.")
    test_ratio: float = Field(0.15, ge=0, le=1, description="Share of IDs in test.")

    @model_validator(mode="after")
    def _ratios_add_up(self) -> SplitRatios:
        # UserError, not ValueError: this runs outside _one_sentence's handler.
        ratios = (self.train_ratio, self.val_ratio, self.test_ratio)
        if abs(sum(ratios) - 1.0) > 1e-6:
            raise UserError(
                f"train_ratio + val_ratio + test_ratio must be 1.0; got {self.train_ratio} + "
                f"{self.val_ratio} + {self.test_ratio} = {sum(ratios):g}."
            )
        if self.train_ratio <= 0:
            raise UserError(
                "train_ratio must be above 0: the training split is also the search gallery."
            )
        return self


class SeedSetting(Settings):
    seed: int = Field(42, description="Random seed of the split and of training.")


class RecallSetting(Settings):
    recall_k_values: list[Annotated[int, Field(gt=0)]] = Field(
        default_factory=lambda: [1, 5],
        min_length=1,
        description="K values of the Recall@K reported in validation and evaluation.",
        examples=["1,5"],
    )


class ReportSettings(Settings):
    top_k: int = Field(20, gt=0, description="Neighbours searched and reported per query photo.")
    # Splits queried against the train gallery; add "test" only for the final evaluation.
    # list[str] plus a check, not list[Literal]: Dagster's config schema has no list of Literal.
    eval_splits: list[str] = Field(
        default_factory=lambda: ["val"],
        min_length=1,
        description="Splits evaluated against the train gallery.",
        examples=["val,test"],
        json_schema_extra={"choices": list(EVAL_SPLITS)},
    )
    min_val_recall_at_1: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Floor on val Recall@1 of the asset check and the promotion gate (0 never "
        "fails).",
    )

    @field_validator("eval_splits")
    @classmethod
    def _known_splits(cls, splits: list[str]) -> list[str]:
        if any(split not in EVAL_SPLITS for split in splits):
            raise ValueError("unknown split")  # worded by error_sentence from the field
        return splits


class IndexTypeSetting(Settings):
    # "flat" is exact (IndexFlatL2); "ivf" or "hnsw" are approximate, for galleries in the millions;
    # "ivfpq" compresses each vector to a few bytes, for galleries past ~10 M (core/search/ivfpq.py).
    index_type: Literal["flat", "ivf", "ivfpq", "hnsw"] = Field(
        "flat",
        description="Faiss index: flat (exact), ivf or hnsw (approximate), ivfpq (compressed, "
        "for galleries past ~10 M photos).",
    )


class EmbeddingBatchSetting(Settings):
    embedding_batch_size: int = Field(64, gt=0, description="Photos per batch when embedding.")


class RerankSettings(Settings):
    # Off by default: the quality benchmark measured no Recall@1 gain (README "결과"; rerank.py).
    rerank: Literal["none", "alpha_qe", "dba_alpha_qe"] = Field(
        "none",
        description="Re-ranking at search time: none, alpha_qe (query expansion) or dba_alpha_qe "
        "(gallery augmentation, then query expansion).",
    )
    rerank_k: int = Field(
        2, ge=1, description="Nearest gallery photos that query expansion and augmentation add."
    )
    rerank_alpha: float = Field(
        3.0, ge=0, description="Exponent α of the similarity weights of re-ranking."
    )


class FlipTtaSetting(Settings):
    # Off by default: no Recall@1 gain in the quality benchmark; training's validation never flips.
    flip_tta: bool = Field(
        False,
        description="Embed each photo and its mirror image, and keep their normalised sum.",
    )


# The sections of PipelineConfig (the checkpoint's "config" dict has one key per section).


class DataConfig(ImageSizeSetting, PhotoSelection, SplitRatios, ImageCacheSetting):
    pass


class ModelConfig(Settings):
    backbone: str = Field(DEFAULT_BACKBONE, description="timm model name of the backbone.")
    pretrained: bool = Field(True, description="Start from the backbone's pretrained weights.")
    pretrained_path: str | None = Field(
        None,
        description="Local weights file (.pth/.safetensors) for machines without the model hub.",
    )
    embedding_dim: int = Field(512, gt=0, description="Size of the embedding vector.")
    pooling: Literal["avg", "gem"] = Field(
        "avg", description="Pooling of the backbone's feature map: avg or gem (generalised mean)."
    )
    gem_p: float = Field(3.0, gt=0, description="Exponent p of gem pooling (1 = average).")
    arcface_s: float = Field(64.0, gt=0, description="ArcFace scale s.")
    arcface_scale_mode: Literal["fixed", "adacos"] = Field(
        "fixed",
        description="ArcFace scale: fixed (arcface_s) or adacos (√2·ln(C−1) for C classes, C ≥ 3).",
    )
    arcface_subcenters: int = Field(
        1, ge=1, description="ArcFace centres per class (sub-center ArcFace; 1 = plain ArcFace)."
    )
    arcface_m_warmup: float = Field(0.0, ge=0, description="ArcFace margin m while warming up.")
    arcface_m_finetune: float = Field(0.5, ge=0, description="ArcFace margin m after warm-up.")


# Which backbone BatchNorm running statistics training updates (core/training/loop.apply_phase).
BatchNormStatistics = Literal["frozen_in_warmup", "always_update", "frozen"]


class TrainingConfig(Settings):
    warmup_epochs: int = Field(5, ge=0, description="Epochs with the backbone frozen.")
    total_epochs: int = Field(50, gt=0, description="Epochs in all, warm-up included.")
    num_classes_per_batch: int | None = Field(
        None, ge=1, description="P of a P×K batch (classes per batch); none for every class."
    )
    samples_per_class: int = Field(4, gt=0, description="K of a P×K batch (photos per class).")
    gradient_accumulation_steps: int | None = Field(
        None, ge=1, description="Batches per optimiser step; none picks it from the GPU table."
    )
    batchnorm_statistics: Literal["auto", "frozen", "frozen_in_warmup", "always_update"] = Field(
        "auto",
        description="Backbone BatchNorm running statistics: frozen (the pretrained ones "
        "throughout), frozen_in_warmup (then updated from each batch), always_update, or auto "
        "(frozen for pretrained weights, frozen_in_warmup for random ones).",
    )
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate.")
    head_lr_multiplier: float = Field(
        1.0,
        gt=0,
        description="Learning rate of the embedding head and ArcFace centres, × learning_rate.",
    )
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Decay of an EMA of the weights, validated and saved; none for no EMA.",
    )
    early_stopping_patience: int = Field(
        10, ge=0, description="Epochs without a better val Recall@1 before stopping."
    )
    use_bf16: bool | None = Field(
        None,
        description="GPU autocast in bf16 (true) or fp16 (false); none picks it from the GPU table.",
    )
    num_workers: int | None = Field(
        None, ge=0, description="Data loader processes; none picks them from the CPU and GPU count."
    )
    compile: Literal["off", "on", "auto"] = Field(
        "auto",
        description="torch.compile the training step: on, off, or auto (on a GPU when a short "
        "warm-up shows it faster; eager on the CPU).",
    )
    scheduler_type: Literal["cosine_warm_restarts", "reduce_on_plateau"] = Field(
        "cosine_warm_restarts", description="Learning rate schedule after warm-up."
    )
    cosine_t0: int = Field(10, ge=1, description="Epochs of the first cosine cycle.")
    cosine_t_mult: int = Field(2, ge=1, description="Growth factor of each cosine cycle.")
    plateau_patience: int = Field(
        5, ge=0, description="Epochs without improvement before reduce_on_plateau lowers the rate."
    )
    plateau_factor: float = Field(
        0.5, gt=0, lt=1, description="Factor reduce_on_plateau multiplies the rate by."
    )
    fresh: bool = Field(False, description="Start over instead of resuming from latest_model.pt.")


def effective_batchnorm_statistics(value: str, model_cfg: ModelConfig) -> BatchNormStatistics:
    """What ``batchnorm_statistics`` does for this model: "auto" freezes the statistics of
    pretrained weights (the quality benchmark's finding: small P×K batches of another domain
    overwrite them and undo the pretrained features) and keeps the warm-up-only freeze for random
    weights, whose initial statistics mean nothing."""
    if value in get_args(BatchNormStatistics):
        return cast(BatchNormStatistics, value)
    starts_pretrained = model_cfg.pretrained or bool(model_cfg.pretrained_path)
    return "frozen" if starts_pretrained else "frozen_in_warmup"


class AugmentationConfig(Settings):
    crop_scale_min: float = Field(
        0.8, gt=0, le=1, description="Smallest share of the photo a random crop keeps."
    )
    rotation_degrees: float = Field(15, ge=0, description="Largest random rotation in degrees.")
    brightness: float = Field(0.2, ge=0, description="Colour jitter: brightness.")
    contrast: float = Field(0.2, ge=0, description="Colour jitter: contrast.")
    saturation: float = Field(0.1, ge=0, description="Colour jitter: saturation.")
    hue: float = Field(0.05, ge=0, le=0.5, description="Colour jitter: hue.")


class EvaluationConfig(
    RecallSetting,
    ReportSettings,
    IndexTypeSetting,
    EmbeddingBatchSetting,
    FlipTtaSetting,
    RerankSettings,
):
    pass


class LifecycleSettings(Settings):
    # The gate (core/lifecycle/gate.py) and the two automation tracks; min_val_recall_at_1
    # (evaluation) is the gate's floor.
    promotion_tolerance: float = Field(
        0.0,
        ge=0,
        description="A new model is served if its val Recall@1 is at least the served model's "
        "minus this.",
    )
    settle_minutes: float = Field(
        10,
        ge=0,
        description="Minutes the photo folder must stay unchanged before new photos are indexed.",
    )
    retrain_cron: str = Field(
        "0 3 * * 1", description="Cron string of the re-training schedule (default: Mondays 03:00)."
    )
    retrain_min_new_fraction: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Share of new photos since the served model was trained that starts a "
        "scheduled re-training (a new class always does).",
    )
    init_from: Literal["none", "served"] = Field(
        "none",
        description="Re-training starts from: none (the backbone's own weights) or served (the "
        "served model's backbone).",
    )


class PipelineConfig(SeedSetting):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain values, one key per section and ``seed`` (stored in every checkpoint)."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PipelineConfig:
        """Inverse of ``to_dict``; unknown keys are an error so a typo never goes unnoticed."""
        return cls.model_validate(raw)

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """``to_dict`` as a JSON file: how the settings reach the training process."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def read_json(cls, path: str | os.PathLike[str], *, remedy: str) -> PipelineConfig:
        """The settings ``write_json`` wrote; a missing or bad file is one UserError + ``remedy``."""
        return cls.from_dict(read_json_object(path, what="settings JSON file", remedy=remedy))

    def flat(self) -> dict[str, Any]:
        """Every setting by its own name (names are unique across sections)."""
        values = {name: getattr(self, name) for name in TOP_LEVEL}
        for section in SECTIONS:
            values.update(getattr(self, section).model_dump())
        return values

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> PipelineConfig:
        """Defaults, overridden by ``values`` keyed by setting name; validated once, as a whole."""
        nested: dict[str, Any] = {section: {} for section in SECTIONS}
        for name, value in values.items():
            section = section_of(name)
            (nested if section is None else nested[section])[name] = value
        return cls.model_validate(nested)


SECTIONS = ("data", "model", "training", "augmentation", "evaluation", "lifecycle")
TOP_LEVEL = tuple(name for name in PipelineConfig.model_fields if name not in SECTIONS)


@functools.cache
def setting_fields() -> dict[str, tuple[str | None, FieldInfo]]:
    """Every setting name → (its section, or None at the top level; its pydantic field)."""
    fields: dict[str, tuple[str | None, FieldInfo]] = {
        name: (None, PipelineConfig.model_fields[name]) for name in TOP_LEVEL
    }
    for section in SECTIONS:
        section_type = PipelineConfig.model_fields[section].annotation
        for name, field in section_type.model_fields.items():
            fields[name] = (section, field)
    return fields


def section_of(name: str) -> str | None:
    fields = setting_fields()
    if name not in fields:
        raise UserError(
            f"Unknown setting '{name}'.{did_you_mean(name, list(fields))} "
            f"Valid settings: {', '.join(sorted(fields))}."
        )
    return fields[name][0]

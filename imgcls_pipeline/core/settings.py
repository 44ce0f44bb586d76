"""Every setting of the pipeline, in one place, with the original specification's names and defaults.

The same dataclasses are the Dagster run config of the assets (see ``defs/run_config.py``) and the
flags of the ``imgcls`` command (``--field=value``). Folders are not settings here: they are
deployment settings read from ``IMGCLS_*_DIR`` environment variables (see ``defs/resources.py``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from imgcls_pipeline.core.errors import UserError

DEFAULT_BACKBONE = "tf_efficientnetv2_l.in21k_ft_in1k"


@dataclass
class DataConfig:
    image_size: int = 480
    min_image_size: int = 224
    train_ratio: float = 0.70
    val_ratio: float = 0.15
    test_ratio: float = 0.15
    class_names: list[str] | None = None


@dataclass
class ModelConfig:
    backbone: str = DEFAULT_BACKBONE
    pretrained: bool = True
    # A local weights file (.pth/.safetensors) for machines that cannot reach the model hub.
    pretrained_path: str | None = None
    embedding_dim: int = 512
    arcface_s: float = 64.0
    arcface_m_warmup: float = 0.0
    arcface_m_finetune: float = 0.5


@dataclass
class TrainingConfig:
    warmup_epochs: int = 5
    total_epochs: int = 50
    num_classes_per_batch: int | None = None
    samples_per_class: int = 4
    gradient_accumulation_steps: int | None = None
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    early_stopping_patience: int = 10
    use_bf16: bool | None = None
    num_workers: int | None = None
    scheduler_type: Literal["cosine_warm_restarts", "reduce_on_plateau"] = "cosine_warm_restarts"
    cosine_t0: int = 10
    cosine_t_mult: int = 2
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    # Start over instead of resuming from latest_model.pt.
    fresh: bool = False


@dataclass
class AugmentationConfig:
    crop_scale_min: float = 0.8
    rotation_degrees: float = 15
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.1
    hue: float = 0.05


@dataclass
class EvaluationConfig:
    recall_k_values: list[int] = field(default_factory=lambda: [1, 5])
    top_k: int = 20
    # Splits queried against the train gallery; add "test" only for the final evaluation.
    eval_splits: list[str] = field(default_factory=lambda: ["val"])
    # "flat" is exact (IndexFlatL2); "ivf" or "hnsw" are approximate, for galleries in the millions.
    index_type: Literal["flat", "ivf", "hnsw"] = "flat"
    # Asset check floor on val Recall@1 (0 disables the check's failure).
    min_val_recall_at_1: float = 0.0
    embedding_batch_size: int = 64


@dataclass
class PipelineConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PipelineConfig:
        """Inverse of ``to_dict``; unknown keys are an error so a typo never goes unnoticed."""
        config = cls()
        for key, value in raw.items():
            if key in SECTIONS:
                section = getattr(config, key)
                for name, item in (value or {}).items():
                    _check_known(name, section)
                    setattr(section, name, item)
            else:
                _check_known(key, config)
                setattr(config, key, value)
        validate(config)
        return config


SECTIONS = ("data", "model", "training", "augmentation", "evaluation")

# Spellings the original specification's train.py used on its command line.
FLAG_ALIASES = {"accum_steps": "gradient_accumulation_steps"}


def _check_known(name: str, obj: Any) -> None:
    names = [f.name for f in dataclasses.fields(obj)]
    if name not in names:
        raise UserError(
            f"Unknown setting '{name}' for {type(obj).__name__}; valid settings: {', '.join(names)}."
        )


def field_index() -> dict[str, tuple[str | None, dataclasses.Field]]:
    """Flat map of every setting name to (section or None for top level, its dataclass field)."""
    index: dict[str, tuple[str | None, dataclasses.Field]] = {}
    for section in SECTIONS:
        section_type = _section_type(section)
        for f in dataclasses.fields(section_type):
            index[f.name] = (section, f)
    for f in dataclasses.fields(PipelineConfig):
        if f.name not in SECTIONS:
            index[f.name] = (None, f)
    return index


def _section_type(section: str) -> type:
    hints = typing.get_type_hints(PipelineConfig)
    return hints[section]


def field_type(section: str | None, name: str) -> Any:
    owner = PipelineConfig if section is None else _section_type(section)
    return typing.get_type_hints(owner)[name]


def parse_value(name: str, text: str, annotation: Any) -> Any:
    """Turn a command-line string into the field's type; a bad value names the flag."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if text.strip().lower() in ("none", "null", ""):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return parse_value(name, text, inner)
    if origin is list:
        (item,) = args
        return [parse_value(name, part.strip(), item) for part in text.split(",") if part.strip()]
    if origin is Literal:
        if text not in args:
            raise UserError(f"--{name} must be one of {', '.join(map(str, args))}, not '{text}'.")
        return text
    if annotation is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise UserError(f"--{name} takes true or false, not '{text}'.")
    try:
        return annotation(text)
    except ValueError:
        kind = {"int": "whole number", "float": "number", "str": "text"}.get(
            annotation.__name__, annotation.__name__
        )
        raise UserError(f"--{name} takes a {kind}, not '{text}'.") from None


def apply_overrides(config: PipelineConfig, overrides: dict[str, str]) -> PipelineConfig:
    """Apply ``{"seed": "7", "class_names": "a,b"}``-style overrides (strings, as typed by a user)."""
    index = field_index()
    for raw_name, text in overrides.items():
        name = FLAG_ALIASES.get(raw_name, raw_name)
        if name not in index:
            close = difflib.get_close_matches(name, list(index), n=3)
            hint = f" Did you mean {', '.join('--' + c for c in close)}?" if close else ""
            raise UserError(
                f"Unknown flag --{raw_name}.{hint} Valid settings: "
                f"{', '.join('--' + n for n in sorted(index))}."
            )
        section, _ = index[name]
        value = parse_value(raw_name, text, field_type(section, name))
        setattr(config if section is None else getattr(config, section), name, value)
    validate(config)
    return config


def validate(config: PipelineConfig) -> None:
    """Reject settings that cannot work, naming the setting and what a valid value looks like."""
    data = config.data
    ratios = (data.train_ratio, data.val_ratio, data.test_ratio)
    if any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise UserError(
            f"train_ratio + val_ratio + test_ratio must be 1.0 and none negative; "
            f"got {data.train_ratio} + {data.val_ratio} + {data.test_ratio} = {sum(ratios):g}."
        )
    if data.train_ratio <= 0:
        raise UserError(
            "train_ratio must be above 0: the training split is also the search gallery."
        )
    positive = {
        "image_size": data.image_size,
        "embedding_dim": config.model.embedding_dim,
        "samples_per_class": config.training.samples_per_class,
        "total_epochs": config.training.total_epochs,
        "top_k": config.evaluation.top_k,
    }
    for name, value in positive.items():
        if value <= 0:
            raise UserError(f"{name} must be a positive number, not {value}.")
    if data.min_image_size < 0:
        raise UserError(f"min_image_size must be 0 or more, not {data.min_image_size}.")
    if config.training.warmup_epochs < 0:
        raise UserError(f"warmup_epochs must be 0 or more, not {config.training.warmup_epochs}.")
    for name in ("num_classes_per_batch", "gradient_accumulation_steps", "num_workers"):
        value = getattr(config.training, name)
        minimum = 0 if name == "num_workers" else 1
        if value is not None and value < minimum:
            raise UserError(
                f"{name} must be at least {minimum} (or None for automatic), not {value}."
            )
    _validate_training(config)
    evaluation = config.evaluation
    if evaluation.embedding_batch_size < 1:
        raise UserError(
            f"embedding_batch_size must be at least 1, not {evaluation.embedding_batch_size}."
        )
    unknown = [s for s in evaluation.eval_splits if s not in ("val", "test")]
    if unknown or not evaluation.eval_splits:
        raise UserError(
            f"eval_splits takes val and/or test (e.g. val,test), not {evaluation.eval_splits}."
        )
    if not config.evaluation.recall_k_values or min(config.evaluation.recall_k_values) < 1:
        raise UserError("recall_k_values must list one or more positive K, e.g. 1,5.")
    if data.class_names is not None and len(data.class_names) == 0:
        raise UserError("class_names is empty: list class folder names, or leave it None for all.")


def _validate_training(config: PipelineConfig) -> None:
    """Ranges that torch/torchvision would otherwise reject deep inside a training process."""
    training, augmentation = config.training, config.augmentation
    checks = [
        ("learning_rate", training.learning_rate > 0, "above 0"),
        ("weight_decay", training.weight_decay >= 0, "0 or more"),
        ("cosine_t0", training.cosine_t0 >= 1, "at least 1"),
        ("cosine_t_mult", training.cosine_t_mult >= 1, "at least 1"),
        ("plateau_factor", 0 < training.plateau_factor < 1, "between 0 and 1"),
        ("plateau_patience", training.plateau_patience >= 0, "0 or more"),
        ("crop_scale_min", 0 < augmentation.crop_scale_min <= 1, "in (0, 1]"),
        ("rotation_degrees", augmentation.rotation_degrees >= 0, "0 or more"),
        ("brightness", augmentation.brightness >= 0, "0 or more"),
        ("contrast", augmentation.contrast >= 0, "0 or more"),
        ("saturation", augmentation.saturation >= 0, "0 or more"),
        ("hue", 0 <= augmentation.hue <= 0.5, "between 0 and 0.5"),
        ("arcface_s", config.model.arcface_s > 0, "above 0"),
    ]
    for name, ok, wanted in checks:
        if not ok:
            value = getattr(training, name, None)
            if value is None:
                value = getattr(augmentation, name, getattr(config.model, name, None))
            raise UserError(f"{name} must be {wanted}, not {value}.")

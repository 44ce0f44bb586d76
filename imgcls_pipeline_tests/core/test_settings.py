"""The settings model: every constraint's sentence, the checkpoint's dict, flags, file, precedence."""

import json
import re
import typing
from pathlib import Path

import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings import (
    ModelConfig,
    PipelineConfig,
    effective_batchnorm_statistics,
    setting_fields,
)
from imgcls_pipeline.core.settings_sources import (
    parse_setting_flags,
    read_settings_file,
    resolve_settings,
)

# (setting, rejected value, the whole sentence a user reads)
REJECTED = [
    ("image_size", 0, "image_size must be above 0, not 0."),
    ("min_image_size", -1, "min_image_size must be 0 or more, not -1."),
    ("train_ratio", 1.5, "train_ratio must be between 0 and 1, not 1.5."),
    ("val_ratio", -0.1, "val_ratio must be between 0 and 1, not -0.1."),
    ("test_ratio", 2, "test_ratio must be between 0 and 1, not 2."),
    ("class_names", [], "class_names must be one or more names, or none (e.g. cat,dog), not []."),
    ("embedding_dim", 0, "embedding_dim must be above 0, not 0."),
    ("pooling", "max", "pooling must be one of avg, gem, not 'max'."),
    ("gem_p", 0.0, "gem_p must be above 0, not 0.0."),
    ("arcface_s", 0.0, "arcface_s must be above 0, not 0.0."),
    (
        "arcface_scale_mode",
        "auto",
        "arcface_scale_mode must be one of fixed, adacos, not 'auto'.",
    ),
    ("arcface_subcenters", 0, "arcface_subcenters must be at least 1, not 0."),
    ("arcface_m_warmup", -0.1, "arcface_m_warmup must be 0 or more, not -0.1."),
    ("arcface_m_finetune", -1, "arcface_m_finetune must be 0 or more, not -1."),
    ("warmup_epochs", -1, "warmup_epochs must be 0 or more, not -1."),
    ("total_epochs", 0, "total_epochs must be above 0, not 0."),
    ("num_classes_per_batch", 0, "num_classes_per_batch must be at least 1, or none, not 0."),
    ("samples_per_class", 0, "samples_per_class must be above 0, not 0."),
    (
        "gradient_accumulation_steps",
        0,
        "gradient_accumulation_steps must be at least 1, or none, not 0.",
    ),
    ("learning_rate", 0, "learning_rate must be above 0, not 0."),
    ("head_lr_multiplier", 0, "head_lr_multiplier must be above 0, not 0."),
    ("weight_decay", -1e-4, "weight_decay must be 0 or more, not -0.0001."),
    ("ema_decay", 1.0, "ema_decay must be between 0 and 1, exclusive, or none, not 1.0."),
    ("early_stopping_patience", -1, "early_stopping_patience must be 0 or more, not -1."),
    ("num_workers", -1, "num_workers must be 0 or more, or none, not -1."),
    ("compile", "yes", "compile must be one of off, on, auto, not 'yes'."),
    (
        "batchnorm_statistics",
        "sometimes",
        "batchnorm_statistics must be one of auto, frozen, frozen_in_warmup, always_update, "
        "not 'sometimes'.",
    ),
    (
        "scheduler_type",
        "step",
        "scheduler_type must be one of cosine_warm_restarts, reduce_on_plateau, not 'step'.",
    ),
    ("cosine_t0", 0, "cosine_t0 must be at least 1, not 0."),
    ("cosine_t_mult", 0, "cosine_t_mult must be at least 1, not 0."),
    ("plateau_patience", -1, "plateau_patience must be 0 or more, not -1."),
    ("plateau_factor", 1.0, "plateau_factor must be between 0 and 1, exclusive, not 1.0."),
    ("crop_scale_min", 0, "crop_scale_min must be above 0 and at most 1, not 0."),
    ("rotation_degrees", -5, "rotation_degrees must be 0 or more, not -5."),
    ("brightness", -0.2, "brightness must be 0 or more, not -0.2."),
    ("contrast", -0.2, "contrast must be 0 or more, not -0.2."),
    ("saturation", -0.1, "saturation must be 0 or more, not -0.1."),
    ("hue", 0.6, "hue must be between 0 and 0.5, not 0.6."),
    (
        "recall_k_values",
        [1, 0],
        "recall_k_values must be one or more whole numbers above 0 (e.g. 1,5), not [1, 0].",
    ),
    ("top_k", 0, "top_k must be above 0, not 0."),
    (
        "eval_splits",
        ["val", "train"],
        "eval_splits must be one or more of val, test (e.g. val,test), not ['val', 'train'].",
    ),
    ("index_type", "lsh", "index_type must be one of flat, ivf, ivfpq, hnsw, not 'lsh'."),
    ("min_val_recall_at_1", 1.5, "min_val_recall_at_1 must be between 0 and 1, not 1.5."),
    ("embedding_batch_size", 0, "embedding_batch_size must be above 0, not 0."),
    (
        "rerank",
        "qe",
        "rerank must be one of none, alpha_qe, dba_alpha_qe, not 'qe'.",
    ),
    ("rerank_k", 0, "rerank_k must be at least 1, not 0."),
    ("rerank_alpha", -1.0, "rerank_alpha must be 0 or more, not -1.0."),
    ("image_cache", "yes", "image_cache must be one of auto, on, off, not 'yes'."),
    ("promotion_tolerance", -0.1, "promotion_tolerance must be 0 or more, not -0.1."),
    ("settle_minutes", -1, "settle_minutes must be 0 or more, not -1."),
    (
        "retrain_min_new_fraction",
        1.5,
        "retrain_min_new_fraction must be between 0 and 1, not 1.5.",
    ),
    ("init_from", "latest", "init_from must be one of none, served, not 'latest'."),
]


@pytest.mark.parametrize(("name", "value", "sentence"), REJECTED, ids=[r[0] for r in REJECTED])
def test_every_constraint_is_one_sentence_naming_the_setting(name, value, sentence) -> None:
    with pytest.raises(UserError) as raised:
        PipelineConfig.from_flat({name: value})
    assert str(raised.value) == sentence


def test_every_constrained_setting_is_in_the_table_above() -> None:
    def constrained(field) -> bool:
        restricted_type = typing.get_origin(field.annotation) in (typing.Literal, list)
        return bool(field.metadata) or restricted_type

    names = {name for name, (_, field) in setting_fields().items() if constrained(field)}
    assert names == {name for name, _, _ in REJECTED}


@pytest.mark.parametrize(
    ("ratios", "sentence"),
    [
        ((0.5, 0.15, 0.15), "train_ratio + val_ratio + test_ratio must be 1.0; got 0.5 + 0.15 + "),
        ((0.0, 0.5, 0.5), "train_ratio must be above 0: the training split is also the search"),
    ],
)
def test_split_ratios_must_add_up_and_leave_a_gallery(ratios, sentence) -> None:
    names = ("train_ratio", "val_ratio", "test_ratio")
    with pytest.raises(UserError, match=re.escape(sentence)):
        PipelineConfig.from_flat(dict(zip(names, ratios, strict=True)))
    assert PipelineConfig.from_flat(dict(zip(names, (0.8, 0.1, 0.1), strict=True)))


def test_a_value_of_the_wrong_type_says_what_the_setting_takes() -> None:
    with pytest.raises(UserError, match=r"^total_epochs takes a whole number, not 'ten'\.$"):
        PipelineConfig.from_flat({"total_epochs": "ten"})
    with pytest.raises(UserError, match=r"^use_bf16 takes true or false or none, not 'sometimes'"):
        PipelineConfig.from_flat({"use_bf16": "sometimes"})


# Checkpoints store this dict and a resume compares it: its shape must never change by accident.
DEFAULTS_AS_STORED = {
    "data": {
        "image_size": 480,
        "min_image_size": 224,
        "train_ratio": 0.70,
        "val_ratio": 0.15,
        "test_ratio": 0.15,
        "class_names": None,
        "image_cache": "auto",
    },
    "model": {
        "backbone": "tf_efficientnetv2_l.in21k_ft_in1k",
        "pretrained": True,
        "pretrained_path": None,
        "embedding_dim": 512,
        "pooling": "avg",
        "gem_p": 3.0,
        "arcface_s": 64.0,
        "arcface_scale_mode": "fixed",
        "arcface_subcenters": 1,
        "arcface_m_warmup": 0.0,
        "arcface_m_finetune": 0.5,
    },
    "training": {
        "warmup_epochs": 5,
        "total_epochs": 50,
        "num_classes_per_batch": None,
        "samples_per_class": 4,
        "gradient_accumulation_steps": None,
        "batchnorm_statistics": "auto",
        "learning_rate": 1e-4,
        "head_lr_multiplier": 1.0,
        "weight_decay": 1e-4,
        "ema_decay": None,
        "early_stopping_patience": 10,
        "use_bf16": None,
        "num_workers": None,
        "compile": "auto",
        "scheduler_type": "cosine_warm_restarts",
        "cosine_t0": 10,
        "cosine_t_mult": 2,
        "plateau_patience": 5,
        "plateau_factor": 0.5,
        "fresh": False,
    },
    "augmentation": {
        "crop_scale_min": 0.8,
        "rotation_degrees": 15,
        "brightness": 0.2,
        "contrast": 0.2,
        "saturation": 0.1,
        "hue": 0.05,
    },
    "evaluation": {
        "recall_k_values": [1, 5],
        "top_k": 20,
        "eval_splits": ["val"],
        "index_type": "flat",
        "min_val_recall_at_1": 0.0,
        "embedding_batch_size": 64,
        "flip_tta": False,
        "rerank": "none",
        "rerank_k": 2,
        "rerank_alpha": 3.0,
    },
    "lifecycle": {
        "promotion_tolerance": 0.0,
        "settle_minutes": 10.0,
        "retrain_cron": "0 3 * * 1",
        "retrain_min_new_fraction": 0.1,
        "init_from": "none",
    },
    "seed": 42,
}


def test_to_dict_is_the_stored_shape_and_from_dict_reads_it_back() -> None:
    assert PipelineConfig().to_dict() == DEFAULTS_AS_STORED
    changed = PipelineConfig.from_flat({"seed": 7, "class_names": ["a"], "eval_splits": ["test"]})
    stored = json.loads(json.dumps(changed.to_dict()))  # as the training process receives it
    assert PipelineConfig.from_dict(stored) == changed
    assert stored["data"]["class_names"] == ["a"] and stored["seed"] == 7


def test_write_json_hands_the_settings_over_and_read_json_validates_them(tmp_path) -> None:
    changed = PipelineConfig.from_flat({"seed": 7, "total_epochs": 3, "class_names": ["a"]})
    changed.write_json(tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text()) == changed.to_dict()
    assert PipelineConfig.read_json(tmp_path / "config.json", remedy="x") == changed
    (tmp_path / "config.json").write_text('{"training": {"total_epochs": 0}}')
    with pytest.raises(UserError, match=r"total_epochs"):
        PipelineConfig.read_json(tmp_path / "config.json", remedy="x")


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_read_json_of_a_missing_or_foreign_file_is_one_sentence_with_the_remedy(
    tmp_path, content
) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=r"config\.json .*; write it again\.$"):
        PipelineConfig.read_json(path, remedy="write it again")


def test_from_dict_refuses_an_unknown_key_and_suggests_the_name() -> None:
    raw = PipelineConfig().to_dict()
    raw["training"]["total_epoch"] = 3
    with pytest.raises(UserError, match=r"Unknown setting 'total_epoch' for TrainingConfig\. "):
        PipelineConfig.from_dict(raw)
    with pytest.raises(UserError, match=r"Did you mean total_epochs\?"):
        PipelineConfig.from_dict(raw)


def test_flags_are_parsed_by_each_settings_type() -> None:
    values = parse_setting_flags(
        {
            "fresh": "true",
            "pretrained": "no",
            "use_bf16": "False",
            "seed": "7",
            "learning_rate": "1e-3",
            "class_names": "a, b",
            "recall_k_values": "1,10",
            "pretrained_path": "none",
            "num_workers": "None",
            "scheduler_type": "reduce_on_plateau",
            "backbone": "none",  # not optional: a (strange) backbone name, not "unset"
            "accum_steps": "2",
        }
    )
    assert values == {
        "fresh": True,
        "pretrained": False,
        "use_bf16": False,
        "seed": 7,
        "learning_rate": 1e-3,
        "class_names": ["a", "b"],
        "recall_k_values": [1, 10],
        "pretrained_path": None,
        "num_workers": None,
        "scheduler_type": "reduce_on_plateau",
        "backbone": "none",
        "gradient_accumulation_steps": 2,
    }


@pytest.mark.parametrize(
    ("flag", "text", "sentence"),
    [
        ("seed", "7.5", "--seed takes a whole number, not '7.5'."),
        ("fresh", "maybe", "--fresh takes true or false, not 'maybe'."),
        ("train_ratio", "lots", "--train_ratio takes a number, not 'lots'."),
        ("accum_steps", "two", "--accum_steps takes a whole number or none, not 'two'."),
        ("index_type", "lsh", "--index_type must be one of flat, ivf, ivfpq, hnsw, not 'lsh'."),
        (
            "recall_k_values",
            "1,x",
            "--recall_k_values takes a list of whole numbers above 0 separated by commas, "
            "not '1,x'.",
        ),
    ],
)
def test_a_bad_flag_value_names_the_flag(flag: str, text: str, sentence: str) -> None:
    with pytest.raises(UserError) as raised:
        parse_setting_flags({flag: text})
    assert str(raised.value) == sentence


def test_an_unknown_flag_suggests_the_closest_names() -> None:
    with pytest.raises(
        UserError, match=r"^Unknown flag --totl_epochs\. Did you mean --total_epochs"
    ):
        parse_setting_flags({"totl_epochs": "3"})


def test_a_flag_out_of_range_is_refused_by_the_model(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^total_epochs must be above 0, not 0\.$"):
        resolve_settings(flags={"total_epochs": "0"})


def test_a_settings_file_holds_flat_names_or_the_stored_sections(tmp_path: Path) -> None:
    flat = tmp_path / "flat.yaml"
    flat.write_text("seed: 3\nclass_names: [cat, dog]\naccum_steps: 2\nuse_bf16: null\n")
    nested = tmp_path / "nested.yaml"
    nested.write_text("seed: 3\ndata:\n  class_names: [cat, dog]\ntraining:\n  total_epochs: 4\n")
    assert read_settings_file(flat).settings == {
        "seed": 3,
        "class_names": ["cat", "dog"],
        "gradient_accumulation_steps": 2,
        "use_bf16": None,
    }
    assert read_settings_file(nested).settings == {
        "seed": 3,
        "class_names": ["cat", "dog"],
        "total_epochs": 4,
    }
    config = resolve_settings(files=[read_settings_file(nested)])
    assert (config.seed, config.data.class_names, config.training.total_epochs) == (
        3,
        ["cat", "dog"],
        4,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sed: 3\n", r"settings\.yaml has an unknown setting 'sed'\. Did you mean seed\?"),
        ("- seed\n", r"settings\.yaml must hold name: value lines"),
        ("seed: [1\n", r"settings\.yaml is not valid YAML"),
        ("top_k: 0\n", r"settings\.yaml: top_k must be above 0, not 0\.$"),
        ("use_bf16: maybe\n", r"settings\.yaml: use_bf16 takes true or false or none, not 'maybe'"),
        ("data_dir: [a, b]\n", r"settings\.yaml: data_dir must be a folder path such as data"),
    ],
)
def test_a_bad_settings_file_is_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        read_settings_file(path)


def test_a_settings_files_folders_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "project" / "settings.yaml"
    path.parent.mkdir()
    path.write_text("data_dir: photos\nartifacts_dir: /srv/artifacts\nseed: 3\n")
    read = read_settings_file(path)
    assert read.folders == {
        "data_dir": str(path.parent / "photos"),
        "artifacts_dir": "/srv/artifacts",
    }
    assert read.settings == {"seed": 3}


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        (
            "data:\n  total_epochs: 4\n",
            "has 'total_epochs' in section 'data', but it belongs in section 'training'; "
            "move it there.",
        ),
        (
            "training:\n  seed: 4\n",
            "has 'seed' in section 'training', but it belongs at the top level; move it there.",
        ),
        (
            "training:\n  totl_epochs: 4\n",
            "has an unknown setting 'totl_epochs' in section 'training'. Did you mean total_epochs?",
        ),
        (
            "augmentation:\n  zzz: 1\n",
            "has an unknown setting 'zzz' in section 'augmentation'. The settings of "
            "'augmentation' are ",
        ),
        (
            "data: 3\n",
            "sets section 'data' to 3, but a section holds name: value lines indented under it "
            "(e.g. 'data:' then '  ",
        ),
        (
            "accum_steps: 2\ntraining:\n  gradient_accumulation_steps: 4\n",
            "sets gradient_accumulation_steps twice ('accum_steps' and "
            "'training: gradient_accumulation_steps'); keep one.",
        ),
    ],
)
def test_a_settings_file_section_holds_only_its_own_settings(
    tmp_path: Path, text: str, sentence: str
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as caught:
        read_settings_file(path)
    message = str(caught.value)
    assert message.startswith(f"Settings file {path} ")
    assert sentence in message
    assert "\n" not in message


def test_an_empty_section_in_a_settings_file_sets_nothing(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("seed: 3\ndata:\n")  # every line under data: commented out
    assert read_settings_file(path).settings == {"seed": 3}


def test_a_setting_and_its_alias_on_one_command_line_are_refused() -> None:
    with pytest.raises(UserError) as caught:
        parse_setting_flags({"accum_steps": "2", "gradient_accumulation_steps": "4"})
    assert str(caught.value) == (
        "--accum_steps and --gradient_accumulation_steps set the same setting "
        "(gradient_accumulation_steps); pass only one."
    )


def test_a_missing_settings_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match=r"missing\.yaml cannot be read .*check the --settings path"
    ):
        read_settings_file(tmp_path / "missing.yaml")


def test_precedence_is_defaults_then_base_then_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("total_epochs: 4\nseed: 3\n")
    config = resolve_settings(
        base={"total_epochs": 12, "top_k": 10, "seed": 1},
        files=[read_settings_file(path)],
        flags={"seed": "9"},
    )
    assert config.training.total_epochs == 4  # the file beats the command's own default
    assert config.evaluation.top_k == 10  # the command's default beats the model's
    assert config.seed == 9  # a flag beats everything
    assert config.model == PipelineConfig().model  # untouched settings keep their defaults


def test_ratios_are_checked_after_every_source_is_merged(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("train_ratio: 0.8\nval_ratio: 0.1\n")  # sums to 1 only with the flag
    config = resolve_settings(files=[read_settings_file(path)], flags={"test_ratio": "0.1"})
    assert (config.data.train_ratio, config.data.val_ratio, config.data.test_ratio) == (
        0.8,
        0.1,
        0.1,
    )


@pytest.mark.parametrize(
    ("value", "pretrained", "pretrained_path", "effective"),
    [
        ("auto", True, None, "frozen"),
        ("auto", False, "weights.pth", "frozen"),
        ("auto", False, None, "frozen_in_warmup"),
        ("always_update", True, None, "always_update"),
        ("frozen", False, None, "frozen"),
    ],
)
def test_auto_batchnorm_statistics_freeze_only_pretrained_ones(
    value, pretrained, pretrained_path, effective
):
    model = ModelConfig(pretrained=pretrained, pretrained_path=pretrained_path)
    assert effective_batchnorm_statistics(value, model) == effective

"""The run config of each asset: flat settings from the core model, validated by it, in the UI too."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings import PipelineConfig, setting_fields
from imgcls_pipeline.defs.run_config import (
    ASSET_CONFIGS,
    EvaluationRunConfig,
    SplitsConfig,
    TrainedCheckpointConfig,
    run_config_for,
)

TRAINING_SECTIONS = ("model", "training", "augmentation")


def test_each_asset_gets_exactly_the_settings_it_uses() -> None:
    ops = run_config_for(PipelineConfig(), list(ASSET_CONFIGS))["ops"]
    keys = {asset: set(op["config"]) for asset, op in ops.items()}
    training = {n for n, (section, _) in setting_fields().items() if section in TRAINING_SECTIONS}
    assert keys == {
        "id_groups": {"min_image_size", "class_names"},
        "splits": {"train_ratio", "val_ratio", "test_ratio", "seed"},
        "image_cache": {"image_cache", "image_size"},
        "trained_checkpoint": training | {"image_size", "seed", "recall_k_values", "image_cache"},
        "served_model": {
            "promotion_tolerance",
            "min_val_recall_at_1",
            "flip_tta",
            "index_type",
            "embedding_batch_size",
            "image_cache",
        },
        "embeddings": {"embedding_batch_size", "flip_tta", "image_cache"},
        "faiss_index": {"index_type"},
        "evaluation": {
            "recall_k_values",
            "top_k",
            "eval_splits",
            "min_val_recall_at_1",
            "rerank",
            "rerank_k",
            "rerank_alpha",
        },
    }


def test_run_config_carries_a_command_lines_settings_to_the_training_process() -> None:
    config = PipelineConfig.from_flat(
        {"backbone": "test_efficientnet", "image_size": 64, "seed": 5, "total_epochs": 3}
    )
    values = run_config_for(config, ["trained_checkpoint"])["ops"]["trained_checkpoint"]["config"]
    received = TrainedCheckpointConfig(**values).pipeline_config()
    assert received == config


def test_a_bad_run_config_is_refused_with_the_same_sentence_as_a_flag() -> None:
    with pytest.raises(UserError, match=r"^top_k must be above 0, not 0\.$"):
        EvaluationRunConfig(top_k=0)
    with pytest.raises(UserError, match=r"^train_ratio \+ val_ratio \+ test_ratio must be 1\.0"):
        SplitsConfig(train_ratio=0.5)


def test_the_launchpad_shows_each_settings_description_and_default() -> None:
    from imgcls_pipeline.definitions import defs

    schema = defs.resolve_implicit_global_asset_job_def().run_config_schema.config_type
    ops = schema.fields["ops"].config_type.fields
    fields = ops["trained_checkpoint"].config_type.fields["config"].config_type.fields
    core = setting_fields()
    assert set(fields) == set(TrainedCheckpointConfig.model_fields)
    for name, field in fields.items():
        assert field.description == core[name][1].description
    assert fields["total_epochs"].default_value == 50
    assert fields["scheduler_type"].default_value == "cosine_warm_restarts"


def test_the_project_files_settings_are_the_launchpads_defaults() -> None:
    from imgcls_pipeline.defs.run_config import with_defaults

    config_class = with_defaults(EvaluationRunConfig, {"top_k": 7, "recall_k_values": [1, 10]})
    assert config_class().top_k == 7
    assert config_class(top_k=3).top_k == 3  # the run config still wins
    assert config_class.model_fields["top_k"].description == core_description("top_k")
    with pytest.raises(UserError, match=r"^top_k must be above 0, not 0\.$"):
        config_class(top_k=0)  # the setting's limits are kept
    assert with_defaults(EvaluationRunConfig, {"seed": 1}) is EvaluationRunConfig


def core_description(name: str) -> str | None:
    return setting_fields()[name][1].description


def test_the_code_location_loads_its_defaults_and_folders_from_imgcls_yaml(tmp_path: Path) -> None:
    """As `dagster dev` loads it (and again on Reload): a fresh process, DAGSTER_HOME set."""
    (tmp_path / "imgcls.yaml").write_text("data_dir: photos\nmin_image_size: 96\ntotal_epochs: 3\n")
    code = (
        "from imgcls_pipeline.definitions import defs\n"
        "job = defs.resolve_implicit_global_asset_job_def()\n"
        "ops = job.run_config_schema.config_type.fields['ops'].config_type.fields\n"
        "def default(op, name):\n"
        "    return ops[op].config_type.fields['config'].config_type.fields[name].default_value\n"
        "print(default('id_groups', 'min_image_size'), default('trained_checkpoint', 'total_epochs'),"
        " default('trained_checkpoint', 'image_size'), defs.resources['paths'].data_dir)\n"
    )
    env = os.environ | {"DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["96", "3", "480", str(tmp_path / "photos")]

    (tmp_path / "imgcls.yaml").write_text("min_image_size: -1\n")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.endswith(
        f"Settings file {tmp_path / 'imgcls.yaml'}: min_image_size must be 0 or more, not -1."
    )

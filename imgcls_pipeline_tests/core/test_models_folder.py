"""The models folder (``models_dir``) and the lifecycle settings: found like the other folders and
settings, from a flag, the environment, imgcls.yaml or the default."""

from pathlib import Path

import pytest

from imgcls_pipeline.cli import main
from imgcls_pipeline.cli.flags import read_command_line
from imgcls_pipeline.cli.init import settings_file_text
from imgcls_pipeline.core.folders import Folders
from imgcls_pipeline.core.settings import PipelineConfig


def test_models_dir_comes_from_a_flag_then_the_environment_then_the_file_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.delenv("IMGCLS_MODELS_DIR", raising=False)
    assert Folders.from_env().models == Path("./models")
    (tmp_path / "imgcls.yaml").write_text("models_dir: versions\n")
    assert Folders.from_env().models == tmp_path / "versions"
    monkeypatch.setenv("IMGCLS_MODELS_DIR", "/srv/models")
    assert Folders.from_env().models == Path("/srv/models")
    options = read_command_line(["--models_dir", "flag_models"], "predict").options
    assert Folders.from_env(**options).models == Path("flag_models")


def test_a_new_projects_file_names_the_models_folder_and_the_lifecycle_settings() -> None:
    text = settings_file_text({}, header="# test")
    assert "\nmodels_dir: models\n" in text
    assert "# --- Lifecycle ---" in text and "# promotion_tolerance: 0.0" in text
    assert "# retrain_cron: 0 3 * * 1" in text


def test_lifecycle_settings_have_the_documented_defaults() -> None:
    lifecycle = PipelineConfig().lifecycle
    assert (lifecycle.promotion_tolerance, lifecycle.settle_minutes) == (0.0, 10)
    assert lifecycle.retrain_cron == "0 3 * * 1" and lifecycle.retrain_min_new_fraction == 0.1
    assert lifecycle.init_from == "none"


def test_help_names_the_models_folder_and_its_environment_variable(capsys) -> None:
    assert main(["predict", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--models_dir DIR" in out and "$IMGCLS_MODELS_DIR" in out

"""The project's imgcls.yaml: where it is found, and its place among flags, files and defaults."""

from pathlib import Path

import pytest

from imgcls_pipeline.cli.flags import read_command_line
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.folders import FOLDER_ENV_VARS, Folders
from imgcls_pipeline.core.project_settings import project_settings_path, read_project_settings
from imgcls_pipeline.core.settings_sources import FOLDER_NAMES


def _project(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "imgcls.yaml").write_text(text)
    return folder


def test_the_file_is_in_dagster_home_else_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert read_project_settings().settings == {}  # no file: the specification's defaults
    _project(Path.cwd(), "seed: 3\n")
    assert read_project_settings().settings == {"seed": 3}
    home = _project(tmp_path / "home", "seed: 4\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert project_settings_path() == home / "imgcls.yaml"
    assert read_project_settings().settings == {"seed": 4}


def test_folders_come_from_a_flag_then_the_environment_then_the_file_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _project(tmp_path / "project", "data_dir: photos\nsplits_dir: /srv/splits\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("IMGCLS_SPLITS_DIR", "env_splits")
    folders = Folders.from_env(checkpoint_dir="flag_checkpoints")
    assert folders == Folders(
        data_dir=str(home / "photos"),  # relative to the file, wherever the UI was started
        splits_dir="env_splits",
        checkpoint_dir="flag_checkpoints",
        artifacts_dir="./artifacts",
    )
    assert set(FOLDER_NAMES) == set(FOLDER_ENV_VARS)


def test_a_command_reads_the_project_file_under_its_settings_file_and_flags(
    tmp_path: Path,
) -> None:
    _project(Path.cwd(), "seed: 3\ntotal_epochs: 4\ntop_k: 7\nimage_size: 96\n")
    extra = tmp_path / "experiment.yaml"
    extra.write_text("total_epochs: 8\ntop_k: 9\ncheckpoint_dir: runs/a\n")
    line = read_command_line(
        ["--settings", str(extra), "--top_k", "11"],
        "pipeline",
        defaults={"seed": 1, "embedding_dim": 64, "image_size": 32},
    )
    config = line.config
    assert config.seed == 3  # the project file beats a command's own default
    assert config.model.embedding_dim == 64  # which beats the specification's
    assert config.training.total_epochs == 8  # --settings FILE beats the project file
    assert config.evaluation.top_k == 11  # a flag beats everything
    assert line.options == {"checkpoint_dir": str(tmp_path / "runs" / "a")}

    demo_like = read_command_line([], "demo", defaults={"image_size": 32}, project=False)
    assert (demo_like.config.seed, demo_like.config.data.image_size) == (42, 32)


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("min_image_size: -1\n", "min_image_size must be 0 or more, not -1."),
        ("train_ratio: 0.5\n", "train_ratio + val_ratio + test_ratio must be 1.0"),
        ("data_dir: 3\n", "data_dir must be a folder path such as data, not 3."),
        ("min_imag_size: 96\n", "unknown setting 'min_imag_size'. Did you mean min_image_size"),
    ],
)
def test_a_bad_project_file_is_one_sentence_naming_the_file_and_key(
    text: str, sentence: str
) -> None:
    path = _project(Path.cwd(), text) / "imgcls.yaml"
    with pytest.raises(UserError) as caught:
        read_project_settings()
    message = str(caught.value)
    assert message.startswith(f"Settings file {path}")
    assert sentence in message
    assert "\n" not in message

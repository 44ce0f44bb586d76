"""``imgcls -h``, ``imgcls COMMAND -h`` / ``imgcls help COMMAND``, and flags a command does not
take."""

from __future__ import annotations

import pytest

from imgcls_pipeline.cli import main
from imgcls_pipeline.cli.flags import COMMAND_SETTINGS, parse_flags
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.defs.jobs import COMMAND_ASSETS
from imgcls_pipeline.defs.run_config import ASSET_CONFIGS


def test_the_overview_lists_each_command_on_one_line(capsys) -> None:
    for flag in ("-h", "--help"):
        assert main([flag]) == 0
        out = capsys.readouterr().out
        assert "``" not in out and "flags" not in out.split("commands:")[0].split()
        for command in ("demo", "split", "train", "index", "pipeline", "evaluate", "predict"):
            assert sum(line.startswith(f"  {command} ") for line in out.splitlines()) == 1


@pytest.mark.parametrize("argv", [["train", "-h"], ["train", "--help"], ["help", "train"]])
def test_command_help_shows_its_flags_with_type_default_and_description(argv, capsys) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "usage: imgcls train [FLAGS]"
    line = next(line for line in lines if line.strip().startswith("--learning_rate"))
    assert "float" in line and "AdamW learning rate. Default: 0.0001" in line
    # Grouped as in the specification, in its order.
    groups = [g for g in ("Model:", "Training:", "Augmentation:") if g in lines]
    assert groups == ["Model:", "Training:", "Augmentation:"]
    assert [lines.index(g) for g in groups] == sorted(lines.index(g) for g in groups)
    assert "--fresh true|false" in out and "--settings FILE" in out
    assert "--top_k" not in out and "--class_names" not in out  # not train's


def test_split_help_lists_data_settings_only(capsys) -> None:
    assert main(["split", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--class_names text,text,…|none" in out and "Default: none" in out
    assert "--learning_rate" not in out and "Model:" not in out


def test_a_flag_of_another_command_names_the_commands_that_take_it(capsys) -> None:
    assert main(["predict", "--fresh", "photo.jpg"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --fresh is a flag of `imgcls train`, `imgcls pipeline` and ")
    assert "not of `imgcls predict`" in err and len(err.splitlines()) == 1
    with pytest.raises(UserError, match="--checkpoint is a flag of `imgcls evaluate` and"):
        parse_flags(["--checkpoint", "x.pt"], "train")


def test_class_names_on_train_is_refused_not_ignored() -> None:
    # train reads the split tables, which already hold the chosen classes.
    with pytest.raises(UserError, match=r"pass --class_names to `imgcls split`"):
        parse_flags(["--class_names", "nonexistent"], "train")
    assert parse_flags(["--class_names", "a,b"], "split")[1] == {"class_names": "a,b"}


def test_the_alias_belongs_to_the_command_of_its_setting() -> None:
    assert parse_flags(["--accum_steps", "2"], "train")[1] == {"accum_steps": "2"}
    with pytest.raises(UserError, match="--accum_steps is a flag of `imgcls train`"):
        parse_flags(["--accum_steps", "2"], "index")


@pytest.mark.parametrize("command", ["split", "train", "index", "pipeline", "demo"])
def test_dagster_commands_take_exactly_the_settings_of_their_assets(command: str) -> None:
    used = {
        name
        for asset in COMMAND_ASSETS[command]
        if asset in ASSET_CONFIGS
        for name in ASSET_CONFIGS[asset].model_fields
    }
    assert COMMAND_SETTINGS[command] == used


def test_unknown_command_suggests_the_closest(capsys) -> None:
    assert main(["trian"]) == 2
    assert "Did you mean train?" in capsys.readouterr().err
    assert main([]) == 2
    assert "usage: imgcls COMMAND" in capsys.readouterr().err


def test_command_help_shows_what_the_project_settings_file_sets(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgcls.yaml").write_text("total_epochs: 12\nimage_size: 64\n")
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Epochs in all, warm-up included. Default: 50 (imgcls.yaml: 12)" in out
    assert "Default: 480 (imgcls.yaml: 64)" in out
    assert "Default: 0.0001\n" in out  # learning_rate: not in the file
    # A mistake in the file is the command's to report; help still helps.
    (tmp_path / "imgcls.yaml").write_text("total_epochs: -3\n")
    assert main(["train", "--help"]) == 0
    assert "Default: 50\n" in capsys.readouterr().out


def test_init_help_offers_only_what_init_takes(capsys) -> None:
    assert main(["init", "-h"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage: imgcls init [DIR]") and "--" not in shown

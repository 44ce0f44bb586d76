"""``imgcls init``: a commented imgcls.yaml that documents every setting and changes nothing."""

from pathlib import Path

import pytest
import yaml

from imgcls_pipeline.cli import main
from imgcls_pipeline.cli.demo import HEADER, write_demo_project
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.project_settings import read_project_settings
from imgcls_pipeline.core.settings import PipelineConfig, setting_fields

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _uncommented(text: str) -> str:
    """Every commented ``name: value`` line made active, as a user changing them all would."""
    names = tuple(f"# {name}: " for name in setting_fields())
    return "\n".join(line[2:] if line.startswith(names) else line for line in text.splitlines())


def test_init_writes_every_setting_with_its_description_and_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    assert main(["init", str(project)]) == 0
    text = (project / "imgcls.yaml").read_text()
    for name, (_, field) in setting_fields().items():
        assert f"\n# {name}: " in text, name
        assert field.description.split()[0] in text
    monkeypatch.setenv("DAGSTER_HOME", str(project))
    # As written it sets only the folders; each commented line holds the real default.
    as_written = read_project_settings()
    assert as_written.settings == {}
    assert as_written.folders["data_dir"] == str(project / "data")
    (project / "imgcls.yaml").write_text(_uncommented(text))
    every_line = read_project_settings().settings
    assert set(every_line) == set(setting_fields())
    assert PipelineConfig.from_flat(every_line) == PipelineConfig()

    # The project's dagster.yaml is written too, with the repository's instance settings.
    written = yaml.safe_load((project / "dagster.yaml").read_text())
    assert written == yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    assert "imgcls.yaml" in capsys.readouterr().out


def test_init_never_overwrites_a_settings_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "imgcls.yaml").write_text("seed: 7\n")
    assert main(["init", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "imgcls.yaml").read_text() == "seed: 7\n"


def test_the_demo_keeps_a_settings_file_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "imgcls.yaml").write_text("seed: 7\n")
    with pytest.raises(UserError, match="was not written by `imgcls demo`"):
        write_demo_project(tmp_path, PipelineConfig())
    assert (tmp_path / "imgcls.yaml").read_text() == "seed: 7\n"
    demo = tmp_path / "demo"
    write_demo_project(demo, PipelineConfig.from_flat({"min_image_size": 64}))
    write_demo_project(demo, PipelineConfig.from_flat({"min_image_size": 32}))  # its own: rewritten
    assert (demo / "imgcls.yaml").read_text().startswith(HEADER)

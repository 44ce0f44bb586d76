"""What the Dagster commands print and record: a named job per command, each step's line in
order with its time, and mistakes reported before Dagster starts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from imgcls_pipeline.cli import main
from imgcls_pipeline_tests.imaging import make_photo_folder, uniform_layout


def test_split_runs_the_named_split_job_and_prints_each_step_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 4, 1))
    flags = ["--data_dir", str(data), "--output_dir", str(tmp_path / "splits")]
    assert (
        main(["split", *flags, "--artifacts_dir", str(tmp_path / "a"), "--min_image_size=32"]) == 0
    )

    err = capsys.readouterr().err.splitlines()
    steps = [line.split("]")[0][1:] for line in err if " done in " in line]
    assert steps[:3] == ["image_manifest", "id_groups", "splits"]
    assert len(steps) == len(set(steps))  # each step once, checks included
    manifest_line = next(i for i, line in enumerate(err) if line.startswith("[image_manifest] "))
    assert manifest_line < err.index(next(line for line in err if line.startswith("[splits] ")))

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
    assert [run.job_name for run in runs] == ["split"]
    assert runs[0].tags["imgcls/command"] == "split"
    # The UI's Overview timeline and Jobs list find a job's runs by its code location's label
    # (`dagster dev -m imgcls_pipeline.definitions`), as it does for a run launched from the UI.
    label = dg.RunsFilter(
        job_name="split",
        tags={".dagster/repository": "__repository__@imgcls_pipeline.definitions"},
    )
    with dg.DagsterInstance.get() as instance:
        assert [run.run_id for run in instance.get_runs(filters=label)] == [runs[0].run_id]


def _fresh_interpreter(argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    code = (
        "import sys\n"
        "from imgcls_pipeline.cli import main\n"
        f"code = main({argv!r})\n"
        "heavy = sorted(m for m in ('dagster', 'torch') if m in sys.modules)\n"
        "print('loaded:', heavy, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    return done, time.monotonic() - started


@pytest.mark.parametrize(
    ("argv", "sentence"),
    [
        (["index"], "Split file 'splits/train.csv' is missing: run `imgcls split`"),
        (["train"], "Split file 'splits/train.csv' is missing: run `imgcls split`"),
        (["split"], "Data folder 'data' does not exist"),
        (["pipeline", "--data_dir", "photos"], "Data folder 'photos' does not exist"),
        (["evaluate"], "No trained model at checkpoints/best_model.pt: run `imgcls train` first"),
        (["predict", "x.jpg"], "No trained model at checkpoints/best_model.pt"),
    ],
)
def test_a_mistake_is_one_sentence_before_dagster_or_torch_is_imported(
    tmp_path: Path, argv: list[str], sentence: str
) -> None:
    done, seconds = _fresh_interpreter(argv, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines[0].startswith(f"error: {sentence}"), done.stderr
    assert lines[1:] == ["loaded: []"]
    assert seconds < 10  # ~1 s on an idle machine; Dagster and torch alone take 6+ s here


def test_index_names_the_missing_model_once_the_tables_exist(tmp_path: Path) -> None:
    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 4, 1))
    assert main(["split", "--data_dir", str(data), "--min_image_size=32"]) == 0
    done, _ = _fresh_interpreter(["index", "--data_dir", str(data)], Path.cwd())
    assert done.returncode == 2
    assert done.stderr.startswith(
        "error: No model is served from artifacts: run `imgcls train` (its gate serves the first "
        "model that passes the floor) or `imgcls promote VERSION`"
    )


def test_every_ui_door_names_the_code_location_the_runs_are_labelled_with() -> None:
    """`dagster dev` in the project (pyproject's [tool.dagster]) and the demo's
    `dagster dev -m imgcls_pipeline.definitions` load one code location name, the one in the
    label that puts an `imgcls` run in the UI's Jobs list."""
    import tomllib

    from imgcls_pipeline.cli.dagster_run import REPOSITORY_LABEL

    root = Path(__file__).resolve().parents[1]
    dagster = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["dagster"]
    assert dagster["module_name"] == "imgcls_pipeline.definitions"
    assert dagster["code_location_name"] == REPOSITORY_LABEL.split("@", 1)[1]

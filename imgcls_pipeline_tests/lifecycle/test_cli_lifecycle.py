"""`imgcls models`, `imgcls promote` (rollback), and `imgcls predict` / `evaluate` on the served
model and bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls_pipeline.cli import main
from imgcls_pipeline.core.lifecycle.bundles import served_bundle
from imgcls_pipeline.core.lifecycle.gate import read_decisions
from imgcls_pipeline.core.lifecycle.registry import register_version


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def folders(project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    # Drawing the report takes seconds per bundle; the kill -9 test of promote draws it.
    monkeypatch.setattr("imgcls_pipeline.cli.promote.REPORT_FIGURES", False)
    data, splits = project
    found = {
        "data": data,
        "splits": splits,
        "models": tmp_path / "models",
        "artifacts": tmp_path / "artifacts",
    }
    for name, path in found.items():
        monkeypatch.setenv(f"IMGCLS_{name.upper()}_DIR", str(path))
    return found


def val_photos(data: Path) -> dict[Path, str]:
    """One val photo of each class (the last ID of a class is val) and its class."""
    return {data / f"class_{c}" / f"c{c}id003_1.jpg": f"class_{c}" for c in range(3)}


def predicted(out: str) -> dict[str, str]:
    return {
        line.split(": ")[0]: line.split(": ")[1].split()[0]
        for line in out.splitlines()
        if not line.startswith(" ") and ": " in line
    }


def test_models_on_an_empty_folder_says_how_to_get_a_first_model(folders, capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (
        f"No model versions in {folders['models']} yet: `imgcls pipeline` (or `imgcls train`) "
        "trains one and registers it as v0001."
    )


def test_promote_serves_by_hand_and_rolls_back(folders, good_run, zeroed, capsys) -> None:
    models, artifacts = folders["models"], folders["artifacts"]
    register_version(good_run, models, folders["splits"])
    register_version(zeroed, models, folders["splits"])
    assert main(["promote", "v0001"]) == 0
    assert served_bundle(artifacts).model_version == "v0001"
    first_bundle = served_bundle(artifacts)
    assert main(["promote", "v0002"]) == 0  # forward, by hand: no gate
    assert served_bundle(artifacts).model_version == "v0002"
    capsys.readouterr()
    assert main(["promote", "v0001"]) == 0  # rollback reuses v0001's bundle for these splits
    out = capsys.readouterr().out
    assert "v0001 is served" in out and "served by hand" in out
    assert served_bundle(artifacts) == first_bundle
    rows = read_decisions(models)
    assert [(r["kind"], r["challenger"], r["champion"]) for r in rows] == [
        ("manual", "v0001", ""),
        ("manual", "v0002", "v0001"),
        ("manual", "v0001", "v0002"),
    ]
    assert main(["models"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["version", "created", "backbone"]
    served_rows = [line for line in table if line.rstrip().endswith("*")]
    assert len(served_rows) == 1 and served_rows[0].startswith("v0001")
    assert "1.0000" in served_rows[0]  # the gate's val R@1 of v0001 on these splits
    assert main(["promote", "v0009"]) == 2
    assert one_error_line(capsys) == (
        f"error: There is no model version 'v0009' in {models} (the known versions are "
        "v0001, v0002); `imgcls models` lists them."
    )


def test_predict_and_evaluate_use_the_served_model_and_predict_refuses_another(
    folders, good_run, zeroed, capsys
) -> None:
    models = folders["models"]
    register_version(good_run, models, folders["splits"])
    other = register_version(zeroed, models, folders["splits"])
    assert main(["promote", "v0001"]) == 0
    photos = val_photos(folders["data"])
    capsys.readouterr()
    assert main(["predict", *map(str, photos)]) == 0
    answers = predicted(capsys.readouterr().out)
    assert answers == {str(p): c for p, c in photos.items()}
    assert main(["predict", "--checkpoint", str(other.weights), *map(str, photos)]) == 2
    error = one_error_line(capsys)
    assert str(other.weights) in error and "(v0001, sha256" in error
    assert "drop --checkpoint to use the served model" in error
    # evaluate scores the served bundle from its own embeddings and index.
    report_file = folders["artifacts"].parent / "val.json"
    assert main(["evaluate", "--output", str(report_file)]) == 0
    captured = capsys.readouterr()
    assert "Evaluating the served bundle v0001-" in captured.err
    assert "Embedding" not in captured.err
    report = json.loads(report_file.read_text())
    assert report["recall@1"] == 1.0 and report["checkpoint"].endswith("v0001/model.pt")


def test_a_project_made_before_model_versions_is_told_what_to_run(
    folders, good_run, capsys
) -> None:
    register_version(good_run, folders["models"], folders["splits"])
    (folders["artifacts"] / "index").mkdir(parents=True)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "was made before model versions; `imgcls promote v0001` serves one." in out
    assert main(["promote", "v0001"]) == 0
    assert (folders["artifacts"] / "pre-lifecycle" / "index").is_dir()
    assert os.readlink(folders["artifacts"] / "index") == "served/index"


def test_models_and_promote_answer_help_and_mistakes_without_heavy_libraries(
    tmp_path: Path,
) -> None:
    script = (
        "import contextlib, io, json, sys\n"
        "from imgcls_pipeline.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    codes = [main(['models']), main(['promote', '-h']), main(['promote', '--bogus=1']),\n"
        "             main(['promote', 'v0001'])]\n"
        "heavy = {'pandas', 'torch', 'dagster', 'faiss'}\n"
        "print(json.dumps([codes, sorted(heavy & {m.split('.')[0] for m in sys.modules})]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGCLS")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[0, 0, 2, 2], []]

"""``imgcls demo``, the README's first command: the whole pipeline on the built-in example."""

import json
from pathlib import Path

import pandas as pd
import pytest

from imgcls_pipeline.cli import main


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_prints_recall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    demo = tmp_path / "demo"

    # Two epochs at 32 px instead of twelve at 64: the same path through every asset, in CI time.
    assert main(["demo", "--dir", str(demo), "--total_epochs", "2", "--image_size", "32"]) == 0

    out = capsys.readouterr().out
    for split in ("train", "val", "test"):
        assert len(pd.read_csv(demo / "splits" / f"{split}.csv")) > 0
    history = pd.read_csv(demo / "checkpoints" / "metrics.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert (demo / "checkpoints" / "best_model.pt").is_file()
    report = json.loads((demo / "artifacts" / "evaluation" / "val.json").read_text())
    recall = report["recall@1"]
    assert 0.0 <= recall <= 1.0
    assert f"| recall@1 | {recall:.4f} |" in out  # the printed table is the report's number
    assert f"DAGSTER_HOME={home}" in out  # how to see the runs in the UI

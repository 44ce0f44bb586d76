"""The champion / challenger gate through `imgcls train` (the Dagster job the UI runs): the first
model is served, a better one replaces it and its bundle, a worse one is rejected with the
decision printed and nothing served changes, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from imgcls_pipeline.core.lifecycle.bundle_files import served_bundle

from imgcls_pipeline.cli import main
from imgcls_pipeline.core.data.example_data import make_example_dataset

pytestmark = pytest.mark.slow

TINY = [
    "--backbone=test_efficientnet",
    "--pretrained=false",
    "--image_size=64",
    "--embedding_dim=32",
    "--warmup_epochs=1",
    "--samples_per_class=4",
    "--num_workers=0",
    "--arcface_s=30",
    "--arcface_m_finetune=0.3",
    "--embedding_batch_size=16",
    "--fresh=true",
]
GOOD = ["--total_epochs=3", "--learning_rate=0.002"]
# One step's worth of learning: the weights barely leave their random start.
WORSE = ["--total_epochs=1", "--learning_rate=1e-9"]


def folders(root: Path) -> list[str]:
    return [
        f"--{name}_dir={root / name}"
        for name in ("data", "splits", "checkpoint", "artifacts", "models")
    ]


def snapshot(*folders: Path) -> dict[str, bytes]:
    return {
        str(path): path.read_bytes()
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gate")
    make_example_dataset(root / "data", ids_per_class=4, photos_per_id=2, size=64)
    assert main(["split", *folders(root)[:2], f"--artifacts_dir={root / 'artifacts'}"]) == 0
    return root


def test_first_model_served_better_promoted_worse_rejected(project: Path, capsys) -> None:
    artifacts, models = project / "artifacts", project / "models"

    assert main(["train", *folders(project), *TINY, *WORSE]) == 0
    first = served_bundle(artifacts)
    assert first is not None and first.model_version == "v0001"
    capsys.readouterr()

    assert main(["train", *folders(project), *TINY, *GOOD]) == 0
    out = capsys.readouterr().out
    assert "Gate decision" in out and "promoted" in out
    second = served_bundle(artifacts)
    assert second is not None and second.model_version == "v0002"
    assert second.bundle_id != first.bundle_id
    assert os.readlink(artifacts / "served") == f"bundles/{second.bundle_id}"

    before = snapshot(models / "v0002", second.folder)
    assert main(["train", *folders(project), *TINY, *WORSE]) == 1
    captured = capsys.readouterr()
    assert "challenger" in captured.out and "v0003" in captured.out
    error_lines = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "v0003" in error_lines[0]
    kept = served_bundle(artifacts)
    assert kept is not None and kept.bundle_id == second.bundle_id
    assert snapshot(models / "v0002", second.folder) == before
    assert (models / "v0003" / "model.pt").is_file()  # the rejected version is kept, not served

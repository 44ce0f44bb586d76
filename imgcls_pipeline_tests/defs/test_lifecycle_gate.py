"""The champion / challenger gate through `imgcls train` (the Dagster job the UI runs): the first
model is served, a better one replaces it and its bundle, a worse one is rejected with the
decision printed and nothing served changes, byte for byte."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgcls_pipeline.cli import main
from imgcls_pipeline.core.data.example_data import make_example_dataset
from imgcls_pipeline.core.lifecycle.bundle_files import served_bundle

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]

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
GOOD = ["--total_epochs=1", "--learning_rate=0.002"]
# Random features already tell these synthetic shapes apart, so a challenger barely trained
# (learning_rate 1e-9, one step) would tie: its one-number embedding makes it worse for sure
# (every photo embeds to +1 or -1, so most queries find the same gallery photo).
WORSE = ["--total_epochs=1", "--learning_rate=1e-9", "--embedding_dim=1"]


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


@contextlib.contextmanager
def dagster_home(root: Path) -> Iterator[None]:
    """``root`` as the project folder (DAGSTER_HOME with the project's dagster.yaml) meanwhile:
    module-scoped fixtures run before the per-test isolation of conftest."""
    shutil.copy(PROJECT_ROOT / "dagster.yaml", root / "dagster.yaml")
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(root)
    try:
        yield
    finally:
        os.environ.pop("DAGSTER_HOME")
        if saved is not None:
            os.environ["DAGSTER_HOME"] = saved


def split(root: Path) -> None:
    """Split the project's photos (the example shapes, 64 px) into its splits folder."""
    argv = ["split", *folders(root), "--min_image_size=32"]
    assert main([a for a in argv if not a.startswith(("--checkpoint", "--models"))]) == 0


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("gate")
    make_example_dataset(root / "data", ids_per_class=4, photos_per_id=2, size=64)
    with dagster_home(root):
        split(root)
        yield root


def test_better_challenger_promoted_then_worse_rejected_with_nothing_served_changed(
    project: Path, capsys
) -> None:
    artifacts, models = project / "artifacts", project / "models"

    assert main(["train", *folders(project), *TINY, *WORSE]) == 0
    first = served_bundle(artifacts)
    assert first is not None and first.model_version == "v0001"
    assert "v0001 is the first model" in capsys.readouterr().out

    assert main(["train", *folders(project), *TINY, *GOOD]) == 0
    assert re.search(r"promoted\s+yes\n", capsys.readouterr().out)
    second = served_bundle(artifacts)
    assert second is not None and second.model_version == "v0002"
    assert os.readlink(artifacts / "served") == f"bundles/{second.bundle_id}"
    assert os.readlink(artifacts / "previous") == f"bundles/{first.bundle_id}"

    before = snapshot(models / "v0002", second.folder)
    assert main(["train", *folders(project), *TINY, *WORSE]) == 1
    captured = capsys.readouterr()
    assert re.search(r"champion\s+v0002\n", captured.out)
    assert re.search(r"promoted\s+no\n", captured.out)
    error_lines = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "is below v0002's" in error_lines[0]
    assert "v0002 stays served" in error_lines[0]
    # The gate's step did its work; only its blocking check failed: not a crash to the reader.
    assert "[served_model] done, but a blocking check failed" in captured.err
    assert "[served_model] failed" not in captured.err
    kept = served_bundle(artifacts)
    assert kept is not None and kept.bundle_id == second.bundle_id
    assert snapshot(models / "v0002", second.folder) == before

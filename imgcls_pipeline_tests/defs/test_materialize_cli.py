"""The data assets through ``dagster asset materialize``, as a user runs them from a shell."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from imgcls_pipeline_tests.imaging import make_photo_folder, uniform_layout

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dagster_asset_materialize_writes_splits_and_keeps_history(tmp_path: Path) -> None:
    data = make_photo_folder(tmp_path / "data", uniform_layout(3, 5, 2))
    shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    (tmp_path / "run.yaml").write_text(
        "ops:\n  id_groups:\n    config:\n      min_image_size: 32\n"
    )
    env = os.environ | {
        "DAGSTER_HOME": str(tmp_path),
        "IMGCLS_DATA_DIR": str(data),
        "IMGCLS_SPLITS_DIR": str(tmp_path / "splits"),
        "IMGCLS_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    command = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "imgcls_pipeline.definitions",
        "--select",
        "image_manifest,id_groups,splits",
        "-c",
        "run.yaml",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr

    train = pd.read_csv(tmp_path / "splits" / "train.csv")
    assert len(train) > 0 and (tmp_path / "splits" / "excluded.csv").is_file()
    assert (tmp_path / "artifacts" / "manifest.parquet").is_file()

    # The run, its materializations and check results are in the persistent instance.
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert (tmp_path / "storage").is_dir() and (tmp_path / "history").is_dir()
        for key in ("image_manifest", "id_groups", "splits"):
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert event is not None, key
        metadata = instance.get_latest_materialization_event(
            dg.AssetKey("splits")
        ).asset_materialization.metadata
        assert "ids_per_class_and_split" in metadata

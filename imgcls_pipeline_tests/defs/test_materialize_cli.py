"""The data assets through ``dagster asset materialize``, as a user runs them from a shell."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from imgcls_pipeline_tests.dagster_cli import materialize
from imgcls_pipeline_tests.imaging import make_photo_folder, uniform_layout


@pytest.mark.slow
def test_dagster_asset_materialize_writes_splits_and_keeps_history(tmp_path: Path) -> None:
    make_photo_folder(tmp_path / "data", uniform_layout(3, 5, 2))
    done = materialize(
        tmp_path,
        "image_manifest,id_groups,splits",
        "ops:\n  id_groups:\n    config:\n      min_image_size: 32\n",
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

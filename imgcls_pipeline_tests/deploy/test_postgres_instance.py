"""The production instance file (deploy/dagster.yaml) against a real PostgreSQL server: the
pipeline's runs, asset history and the ``gpu`` pool live in Postgres and are seen by every
process that opens the instance."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from imgcls_pipeline_tests import postgres
from imgcls_pipeline_tests.imaging import make_photo_folder, uniform_layout

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

pytestmark = pytest.mark.skipif(
    postgres.missing_reason() is not None, reason=postgres.missing_reason() or ""
)


@pytest.fixture(scope="module")
def server() -> Iterator[postgres.PostgresServer]:
    with postgres.postgres_server() as started:
        yield started


@pytest.fixture
def instance_home(
    tmp_path: Path, server: postgres.PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A DAGSTER_HOME holding deploy/dagster.yaml as shipped, pointed at the server through
    the environment variables the file documents."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    for name, value in {
        "DAGSTER_PG_HOST": server.host,
        "DAGSTER_PG_PORT": str(server.port),
        "DAGSTER_PG_USERNAME": server.user,
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_PG_DB": server.database,
    }.items():
        monkeypatch.setenv(name, value)
    return home


def test_runs_and_asset_history_are_kept_in_postgres(tmp_path: Path, instance_home: Path) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    from imgcls_pipeline.definitions import defs
    from imgcls_pipeline.defs.resources import PipelinePaths

    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 4, 1))
    paths = PipelinePaths.from_env(
        data_dir=str(data),
        splits_dir=str(tmp_path / "splits"),
        artifacts_dir=str(tmp_path / "artifacts"),
        checkpoint_dir=str(tmp_path / "checkpoints"),
    )
    selection = ["photo_folder", "image_manifest", "id_groups", "splits"]
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        result = dg.materialize(
            list(defs.assets),
            selection=dg.AssetSelection.assets(*selection),
            resources={**defs.resources, "paths": paths},
            run_config={"ops": {"id_groups": {"config": {"min_image_size": 0}}}},
            instance=instance,
        )
        assert result.success

    # A fresh instance object, as the webserver or daemon would open it, reads it all back.
    with dg.DagsterInstance.from_config(str(instance_home)) as reader:
        run = reader.get_run_by_id(result.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        for name in selection[1:]:
            event = reader.get_latest_materialization_event(dg.AssetKey(name))
            assert event is not None and event.run_id == result.run_id
        splits = reader.get_latest_materialization_event(dg.AssetKey("splits"))
        metadata = splits.asset_materialization.metadata
        assert sum(metadata[f"{s}_images"].value for s in ("train", "val", "test")) == 8


def test_the_gpu_pool_limit_is_kept_per_instance_and_enforced(instance_home: Path) -> None:
    from imgcls_pipeline.definitions import defs

    pool = defs.get_assets_def("trained_checkpoint").op.pool
    assert pool == "gpu"
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        storage = instance.event_log_storage
        storage.delete_concurrency_limit(pool)  # the module's server is shared between tests
        # A pool gets the file's default limit (one training at a time) when first used.
        storage.initialize_concurrency_limit_to_default(pool)
        assert storage.get_concurrency_info(pool).slot_count == 1
        # `dagster instance concurrency set gpu 2` on a cluster with room for two trainings:
        storage.set_concurrency_slots(pool, 2)

    with dg.DagsterInstance.from_config(str(instance_home)) as other_process:
        storage = other_process.event_log_storage
        assert {limit.name: limit.limit for limit in storage.get_pool_limits()}[pool] == 2
        claims = [
            storage.claim_concurrency_slot(pool, f"run{i}", "trained_checkpoint") for i in range(3)
        ]
        assert [claim.is_claimed for claim in claims] == [True, True, False]  # third one waits
        storage.free_concurrency_slots_for_run("run0")
        assert storage.claim_concurrency_slot(pool, "run2", "trained_checkpoint").is_claimed
        for run_id in ("run1", "run2"):
            storage.free_concurrency_slots_for_run(run_id)

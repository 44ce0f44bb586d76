"""The image_cache asset: built when photos are large, reported in metadata, a no-op when current."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from imgcls_pipeline.definitions import defs
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline_tests.core.data.test_image_cache import scene

SPLIT = ("image_manifest", "id_groups", "splits")


def _materialize(paths: PipelinePaths, instance: dg.DagsterInstance, *assets: str, **config):
    ops = {"image_cache": {"config": {"image_size": 96, **config}}}
    if "id_groups" in assets:
        ops["id_groups"] = {"config": {"min_image_size": 64}}
    result = dg.materialize(
        list(defs.assets),
        selection=dg.AssetSelection.assets(*assets),
        resources={**defs.resources, "paths": paths},
        run_config={"ops": ops},
        instance=instance,
    )
    event = result.asset_materializations_for_node("image_cache")[0]
    values = {key: getattr(value, "value", value) for key, value in event.metadata.items()}
    return values, event.tags.get("dagster/data_version")


def test_the_asset_caches_large_photos_once_and_skips_small_ones(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for index in range(6):
        scene(data / f"c{index % 2}" / f"id{index}_1.jpg", index, size=(320, 240))
    paths = PipelinePaths.from_env(
        data_dir=str(data), splits_dir=str(tmp_path / "s"), artifacts_dir=str(tmp_path / "a")
    )
    with dg.instance_for_test() as instance:
        # 240 px photos against a 110 px cache side: over twice as large, so auto builds it.
        first, version = _materialize(paths, instance, *SPLIT, "image_cache")
        assert first["built"] is True and first["cache_side_px"] == 110
        assert (first["entries"], first["new"], first["reused"], first["hit_rate"]) == (
            6,
            6,
            0,
            1.0,
        )
        assert first["size_mb"] > 0 and first["images_per_s"] > 0
        assert len(list((tmp_path / "a/image_cache/96").glob("*/*.jpg"))) == 6

        again, same_version = _materialize(paths, instance, "image_cache")
        assert (again["new"], again["reused"], again["pruned"]) == (0, 6, 0)
        assert same_version == version  # nothing changed: training is not marked stale

        off, _ = _materialize(paths, instance, "image_cache", image_cache="off")
        assert off["built"] is False and off["reason"] == "image_cache is off"
        larger, _ = _materialize(paths, instance, "image_cache", image_size=128)
        assert larger["built"] is False and "median short side 240 px" in larger["reason"]

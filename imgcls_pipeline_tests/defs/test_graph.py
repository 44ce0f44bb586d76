"""Pin the asset graph: a change to keys, dependencies, groups or checks is a visible diff."""

import dagster as dg

from imgcls_pipeline.definitions import defs

EXPECTED_DEPS = {
    "photo_folder": set(),
    "image_manifest": {"photo_folder"},
    "id_groups": {"image_manifest"},
    "splits": {"id_groups"},
    "image_cache": {"splits"},
    "trained_checkpoint": {"splits", "image_cache"},
    "model_version": {"trained_checkpoint"},
    "served_model": {"model_version"},
    "embeddings": {"served_model", "splits"},
    "faiss_index": {"embeddings"},
    "evaluation": {"faiss_index"},
}
EXPECTED_GROUPS = {
    "photo_folder": "data",
    "image_manifest": "data",
    "id_groups": "data",
    "splits": "data",
    "image_cache": "data",
    "trained_checkpoint": "training",
    "model_version": "lifecycle",
    "served_model": "lifecycle",
    "embeddings": "search",
    "faiss_index": "search",
    "evaluation": "search",
}
EXPECTED_CHECKS = {
    ("splits", "no_id_in_two_splits"),
    ("splits", "split_shares_near_ratios"),
    ("splits", "every_usable_photo_in_one_split"),
    ("evaluation", "val_recall_at_1_floor"),
    ("served_model", "challenger_not_rejected"),
}


def _graph():
    return defs.resolve_asset_graph()


def test_asset_keys_and_dependencies() -> None:
    graph = _graph()
    deps = {
        key.to_user_string(): {parent.to_user_string() for parent in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert deps == EXPECTED_DEPS


def test_asset_groups() -> None:
    graph = _graph()
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == EXPECTED_GROUPS


def test_asset_checks() -> None:
    checks = {(key.asset_key.to_user_string(), key.name) for key in _graph().asset_check_keys}
    assert checks == EXPECTED_CHECKS


def test_blocking_checks_guard_splits_the_gate_and_the_floor() -> None:
    # A failed blocking check stops the run and makes `imgcls` exit non-zero.
    blocking = {
        spec.name
        for checks_def in [*defs.asset_checks, *defs.assets]
        for spec in getattr(checks_def, "check_specs", ())
        if spec.blocking
    }
    assert blocking == {"no_id_in_two_splits", "challenger_not_rejected", "val_recall_at_1_floor"}


def test_training_uses_the_gpu_pool_and_resources() -> None:
    graph = _graph()
    node = graph.get(dg.AssetKey("trained_checkpoint"))
    assert node.pools == {"gpu"}
    assert {"gpu", "pipes_subprocess_client", "paths"} <= set(defs.resources)


def test_loading_the_code_location_does_not_import_torch_or_faiss() -> None:
    # The UI, sensors and `imgcls split` load the definitions; torch/timm/faiss cost ~4 s.
    import subprocess
    import sys

    probe = (
        "import sys, imgcls_pipeline.definitions; "
        "print(sorted(m for m in ('torch', 'timm', 'faiss', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

"""Model versions: registered immutable and numbered in order, listed, read back, and named in
one sentence when unknown."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.hashing import file_sha256
from imgcls_pipeline.core.lifecycle.folders import temp_folder
from imgcls_pipeline.core.lifecycle.registry import (
    epochs_run,
    list_versions,
    read_version,
    register_version,
)
from imgcls_pipeline.core.locks import FolderLock
from imgcls_pipeline.core.search.inference import load_model
from imgcls_pipeline.core.training.checkpoint import BEST, splits_fingerprint


def test_a_finished_run_becomes_the_next_immutable_version(
    project, good_run, zeroed, tmp_path: Path
) -> None:
    _, splits = project
    models = tmp_path / "models"
    first = register_version(good_run, models, splits)
    second = register_version(zeroed, models, splits)
    assert [first.version, second.version] == ["v0001", "v0002"]
    assert sorted(p.name for p in first.folder.iterdir()) == [
        "metrics.csv",
        "model.pt",
        "version.json",
    ]
    # The same weights as the run's best_model.pt, loadable for inference.
    assert first.checkpoint_sha256 == file_sha256(good_run / BEST) == file_sha256(first.weights)
    assert load_model(first.weights).model.embedding_dim == 32
    record = json.loads((first.folder / "version.json").read_text())
    assert record["class_names"] == ["class_0", "class_1", "class_2"]
    assert record["splits_fingerprint"] == splits_fingerprint(splits)
    assert record["backbone"] == "test_efficientnet" and record["embedding_dim"] == 32
    assert record["split_rows"] == {"train": 18, "val": 6, "test": 0}
    assert record["settings"]["training"]["total_epochs"] == 2
    assert record["epochs"] == 2  # the epochs trained, not best_model.pt's (best) epoch
    assert 0 <= first.val_recall_at_1 <= 1
    assert not any(p.stat().st_mode & 0o222 for p in first.folder.iterdir())
    assert [v.version for v in list_versions(models)] == ["v0001", "v0002"]
    assert read_version(models, "v0002") == second


def test_registering_the_same_weights_again_returns_their_version(
    project, good_run, tmp_path: Path
) -> None:
    _, splits = project
    models = tmp_path / "models"
    first = register_version(good_run, models, splits)
    assert register_version(good_run, models, splits) == first
    assert [v.version for v in list_versions(models)] == ["v0001"]


def test_a_dead_builders_folder_is_removed_and_a_live_one_kept(
    project, good_run, tmp_path: Path
) -> None:
    _, splits = project
    models = tmp_path / "models"
    live = temp_folder(models, "version")  # this process: alive
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    dead = models / live.name.replace(f"-{os.getpid()}.", f"-{dead_pid.pid}.")
    dead.mkdir()
    other_host = models / ".version.elsewhere-1.abc.tmp"  # its pid means nothing here
    other_host.mkdir()
    register_version(good_run, models, splits)
    assert live.is_dir() and other_host.is_dir() and not dead.exists()
    assert [v.version for v in list_versions(models)] == ["v0001"]


def test_the_models_folder_has_one_writer(project, good_run, tmp_path: Path) -> None:
    _, splits = project
    models = tmp_path / "models"
    # flock belongs to the open file: a second lock in this process is refused as another
    # process's would be.
    with (
        FolderLock(models, "models folder"),
        pytest.raises(UserError, match=r"The models folder .* is in use"),
    ):
        register_version(good_run, models, splits)


def test_an_unknown_version_is_one_sentence_listing_the_known_ones(
    project, good_run, tmp_path: Path
) -> None:
    _, splits = project
    models = tmp_path / "models"
    with pytest.raises(UserError, match=r"no model version 'v0001' .* \(it holds no version yet\)"):
        read_version(models, "v0001")
    register_version(good_run, models, splits)
    with pytest.raises(UserError) as raised:
        read_version(models, "v7")
    assert str(raised.value) == (
        f"There is no model version 'v7' in {models} (the known versions are v0001); "
        "`imgcls models` lists them."
    )
    assert list_versions(tmp_path / "nothing") == []


def test_epochs_are_the_last_epoch_of_the_runs_metrics(tmp_path: Path) -> None:
    """best_model.pt knows only its own (best) epoch; a run that stopped early at epoch 10 with
    its best at 4 trained 10 epochs."""
    metrics = tmp_path / "metrics.csv"
    rows = "".join(f"{epoch},finetune,0.5\n" for epoch in range(1, 11))
    metrics.write_text("epoch,phase,margin\n" + rows)
    assert epochs_run(metrics, 4) == 10
    assert epochs_run(tmp_path / "missing.csv", 4) == 4
    (tmp_path / "odd.csv").write_text("step,loss\n1,0.5\n")
    assert epochs_run(tmp_path / "odd.csv", 4) == 4

"""Bundles: the new-photos track reuses rows and embeds only new photos; serve switches one link,
keeps the documented paths, cleans up stale bundles and moves a pre-bundle project's folders."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.lifecycle.bundle_files import has_plain_folders
from imgcls_pipeline.core.lifecycle.bundles import (
    Bundle,
    build_bundle,
    check_matches,
    serve,
    served_bundle,
)
from imgcls_pipeline.core.lifecycle.folders import temp_folder, this_builder
from imgcls_pipeline.core.lifecycle.registry import register_version
from imgcls_pipeline.core.search.index import load_index, search
from imgcls_pipeline_tests.imaging import CLASS_COLOURS, write_photo


def fake_bundle(artifacts: Path, bundle_id: str, builder: str | None = None) -> Bundle:
    """A bundle folder with its bundle.json and one index file: enough for serve. Built by this
    process unless ``builder`` says otherwise (a finished one: "")."""
    from imgcls_pipeline.core.lifecycle.bundle_files import write_bundle_file

    folder = artifacts / "bundles" / bundle_id
    (folder / "index").mkdir(parents=True)
    (folder / "index" / "gallery.csv").write_text(bundle_id)
    bundle = Bundle(folder, bundle_id, "v0001", "ab" * 32, "cd" * 32, False, "flat", 8)
    bundle = replace(bundle, builder=this_builder() if builder is None else builder)
    write_bundle_file(folder, bundle)
    return bundle


def test_serve_switches_one_link_and_keeps_the_documented_paths(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    first, second = fake_bundle(artifacts, "b1"), fake_bundle(artifacts, "b2")
    serve(artifacts, first, log=lambda _: None)
    assert os.readlink(artifacts / "served") == "bundles/b1"  # relative: the folder can move
    assert (artifacts / "index" / "gallery.csv").read_text() == "b1"
    serve(artifacts, second, log=lambda _: None)
    assert served_bundle(artifacts) == second
    assert (artifacts / "index" / "gallery.csv").read_text() == "b2"
    assert os.readlink(artifacts / "previous") == "bundles/b1"
    assert [p.name for p in artifacts.iterdir() if p.name.startswith(".")] == []


def test_stale_bundles_go_but_not_the_served_the_previous_or_one_being_built(
    tmp_path: Path,
) -> None:
    artifacts = tmp_path / "artifacts"
    finished = [fake_bundle(artifacts, f"b{n}", builder="") for n in range(1, 4)]
    built_by_us = fake_bundle(artifacts, "b4")
    fake_bundle(artifacts, "b5")  # its builder (this process) may serve it
    building = temp_folder(artifacts / "bundles", "bundle")  # this live process builds it
    dead_builder = subprocess.Popen(["true"])
    dead_builder.wait()
    orphan = Path(str(building).replace(f"-{os.getpid()}.", f"-{dead_builder.pid}."))
    orphan.mkdir()
    serve(artifacts, finished[2], log=lambda _: None)
    serve(artifacts, built_by_us, log=lambda _: None)
    left = sorted(p.name for p in (artifacts / "bundles").iterdir())
    assert left == sorted(["b3", "b4", "b5", building.name])


def test_a_project_made_before_bundles_has_its_folders_moved_aside(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    (artifacts / "index").mkdir(parents=True)
    (artifacts / "index" / "gallery.faiss").write_bytes(b"old index")
    assert has_plain_folders(artifacts) and served_bundle(artifacts) is None
    said: list[str] = []
    serve(artifacts, fake_bundle(artifacts, "b1"), log=said.append)
    assert (artifacts / "pre-lifecycle" / "index" / "gallery.faiss").read_bytes() == b"old index"
    assert (artifacts / "index").is_symlink() and not has_plain_folders(artifacts)
    assert said and "pre-lifecycle" in said[0]


def test_a_served_link_to_nothing_is_one_sentence(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    os.symlink("bundles/gone", artifacts / "served")
    with pytest.raises(UserError, match=r"holds no complete bundle; serve a model again"):
        served_bundle(artifacts)


def test_new_photos_reuse_the_served_rows_and_a_new_class_becomes_searchable(
    project, good_run, tmp_path: Path
) -> None:
    data, splits = (shutil.copytree(p, tmp_path / p.name) for p in project)
    artifacts = tmp_path / "artifacts"
    version = register_version(good_run, tmp_path / "models", splits)
    settings = {"flip_tta": False, "index_type": "flat", "batch_size": 8, "num_workers": 0}
    first = build_bundle(artifacts, version, data, splits, log=lambda _: None, **settings)
    serve(artifacts, first, log=lambda _: None)
    # A new class arrives: three IDs in train, one in val.
    rows = []
    for n in range(4):
        path = write_photo(data / "class_new" / f"new{n}_1.jpg", (72, 64), CLASS_COLOURS[3], n)
        rows.append(
            {
                "image_path": path.relative_to(data).as_posix(),
                "class_name": "class_new",
                "object_id": f"new{n}",
                "sequence": 1,
                "width": 72,
                "height": 64,
            }
        )
    for split, chosen in (("train", rows[:3]), ("val", rows[3:])):
        table = pd.read_csv(splits / f"{split}.csv", dtype=str)
        pd.concat([table, pd.DataFrame(chosen)]).to_csv(splits / f"{split}.csv", index=False)
    said: list[str] = []
    second = build_bundle(
        artifacts, version, data, splits, reuse=first, log=said.append, **settings
    )
    assert "train: 18 rows reused, 3 embedded." in said
    old, new = (np.load(b.folder / "embeddings" / "train.npy") for b in (first, second))
    assert np.array_equal(new[:18], old)  # copied, not embedded again
    index, gallery = load_index(second.folder / "index")
    assert gallery["class_name"].tolist().count("class_new") == 3
    query = np.load(second.folder / "embeddings" / "val.npy")[-1:]
    _, nearest = search(index, query, 1)
    assert gallery["class_name"].iat[int(nearest[0, 0])] == "class_new"


def test_a_model_that_is_not_the_bundles_is_refused_naming_both(
    project, good_run, zeroed, tmp_path: Path
) -> None:
    _, splits = project
    version = register_version(good_run, tmp_path / "models", splits)
    other = register_version(zeroed, tmp_path / "models", splits)
    bundle = replace(
        fake_bundle(tmp_path / "artifacts", "b1"),
        checkpoint_sha256=version.checkpoint_sha256,
        dimension=32,
    )
    check_matches(bundle, version.weights)
    with pytest.raises(UserError) as raised:
        check_matches(bundle, other.weights)
    sentence = str(raised.value)
    assert (
        str(other.weights) in sentence and "v0001" in sentence and "embedding size 32" in sentence
    )
    assert sentence.count(". ") == 0 and "drop --checkpoint" in sentence

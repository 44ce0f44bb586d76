"""Pre-flight: the stat pass that finds missing or changed photos before any work starts."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from imgcls_pipeline.core.data.manifest import scan_manifest, write_manifest
from imgcls_pipeline.core.data.preflight import preflight
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline_tests.imaging import make_photo_folder, uniform_layout


@pytest.fixture
def folders(tmp_path):
    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 4, 2), (32, 32))
    artifacts = tmp_path / "artifacts"
    write_manifest(artifacts, scan_manifest(data)[0])
    paths = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.jpg"))
    tables = {
        "train": pd.DataFrame({"image_path": paths[:12]}),
        "val": pd.DataFrame({"image_path": paths[12:]}),
    }
    return data, artifacts, tables


def test_all_present_and_unchanged_says_what_was_checked(folders):
    data, artifacts, tables = folders
    line = preflight(tables, data, artifacts)
    assert line.startswith("Pre-flight: 16 photos of train, val as recorded in ")
    assert "manifest.parquet" in line


def test_missing_and_changed_photos_are_listed_in_one_sentence(folders):
    data, artifacts, tables = folders
    (data / "class_0" / "c0id001_1.jpg").unlink()
    changed = data / "class_1" / "c1id003_2.jpg"
    changed.write_bytes(changed.read_bytes() + b"\0")  # same name, other bytes
    with pytest.raises(UserError) as caught:
        preflight(tables, data, artifacts)
    message = str(caught.value)
    assert message.startswith("2 of 16 photos the split tables list cannot be used")
    assert f"1 missing, 1 changed since the split, compared with {artifacts}" in message
    assert "train.csv: class_0/c0id001_1.jpg (missing)" in message
    assert "val.csv: class_1/c1id003_2.jpg (changed since the split)" in message
    assert "run `imgcls split` again" in message and "\n" not in message


def test_a_touched_photo_counts_as_changed(folders):
    data, artifacts, tables = folders
    photo = data / "class_0" / "c0id000_1.jpg"
    os.utime(photo, ns=(photo.stat().st_atime_ns, photo.stat().st_mtime_ns + 10**9))
    with pytest.raises(UserError, match=r"class_0/c0id000_1\.jpg \(changed since the split\)"):
        preflight(tables, data, artifacts)


def test_many_problems_name_the_first_few_and_count_the_rest(folders):
    data, artifacts, tables = folders
    for photo in (data / "class_0").iterdir():
        photo.unlink()
    with pytest.raises(UserError, match=r"^8 of 16 photos .*; and 3 more; run `imgcls split`"):
        preflight(tables, data, artifacts)


def test_without_a_manifest_existence_is_still_checked(folders, tmp_path):
    data, _, tables = folders
    assert "present (no manifest" in preflight(tables, data, tmp_path / "no-artifacts")
    (data / "class_1" / "c1id000_1.jpg").unlink()
    with pytest.raises(UserError, match=r"c1id000_1\.jpg \(missing\)"):
        preflight(tables, data, None)


def test_a_directory_where_a_photo_should_be_is_not_a_file(folders):
    data, artifacts, tables = folders
    photo = data / "class_0" / "c0id000_1.jpg"
    photo.unlink()
    photo.mkdir()
    with pytest.raises(UserError, match=r"c0id000_1\.jpg \(not a file\)"):
        preflight(tables, data, artifacts)


def test_a_class_folder_that_is_a_symlink_to_another_disk_is_fine(tmp_path):
    elsewhere = make_photo_folder(tmp_path / "other_disk", {"cat": {"c1": 2}}, (32, 32))
    data = tmp_path / "data"
    data.mkdir()
    (data / "cat").symlink_to(elsewhere / "cat", target_is_directory=True)
    write_manifest(tmp_path / "artifacts", scan_manifest(data)[0])
    tables = {"train": pd.DataFrame({"image_path": ["cat/c1_1.jpg", "cat/c1_2.jpg"]})}
    assert "2 photos of train as recorded" in preflight(tables, data, tmp_path / "artifacts")


def test_a_manifest_of_another_folder_judges_only_the_photos_it_lists(folders, tmp_path):
    data, _, tables = folders
    other = make_photo_folder(tmp_path / "other", {"class_0": {"c0id000": 1}}, (20, 20))
    write_manifest(tmp_path / "other_artifacts", scan_manifest(other)[0])
    with pytest.raises(UserError, match=r"^1 of 16 .*c0id000_1\.jpg \(changed since the split\)"):
        preflight(tables, data, tmp_path / "other_artifacts")
    (other / "class_0" / "c0id000_1.jpg").unlink()
    write_manifest(tmp_path / "other_artifacts", scan_manifest(other)[0])
    assert "16 photos" in preflight(tables, data, tmp_path / "other_artifacts")

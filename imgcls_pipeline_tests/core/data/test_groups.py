from pathlib import Path

import pytest

from imgcls_pipeline.core.data.groups import select_id_groups
from imgcls_pipeline.core.data.manifest import class_folders, scan_manifest
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline_tests.imaging import make_photo_folder, write_photo


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = make_photo_folder(
        tmp_path,
        {"rose": {"r1": 2, "r2": 2, "dup": 1}, "tulip": {"t1": 2, "dup": 1}},
        size=(120, 100),
    )
    write_photo(root / "rose" / "r2_3.jpg", size=(120, 40))  # one small photo in group r2
    (root / "empty").mkdir()
    return root


def _select(folder: Path, **kwargs):
    manifest, _ = scan_manifest(folder)
    options = {"min_image_size": 64, "class_names": None} | kwargs
    return select_id_groups(manifest, class_folders(folder), **options)


def test_small_photo_drops_its_whole_group(folder: Path) -> None:
    groups = _select(folder)
    reasons = dict(zip(groups.excluded["image_path"], groups.excluded["reason"], strict=True))
    assert reasons["rose/r2_3.jpg"] == "too_small"
    assert reasons["rose/r2_1.jpg"] == reasons["rose/r2_2.jpg"] == "group_has_small_image"
    assert "r2" not in set(groups.images["object_id"])


def test_label_conflict_drops_the_id_and_reports_it(folder: Path) -> None:
    groups = _select(folder)
    assert list(groups.conflicts["object_id"]) == ["dup"]
    assert groups.conflicts["classes"].iloc[0] == "rose, tulip"
    assert "dup" not in set(groups.images["object_id"])
    reasons = set(groups.excluded.loc[groups.excluded["reason"] == "label_conflict", "image_path"])
    assert reasons == {"rose/dup_1.jpg", "tulip/dup_1.jpg"}


def test_class_names_selects_classes(folder: Path) -> None:
    groups = _select(folder, class_names=["tulip"])
    assert set(groups.images["class_name"]) == {"tulip"}
    assert (groups.excluded["reason"] == "class_not_selected").sum() == 6
    # With rose not selected, dup is no longer in two selected classes.
    assert "dup" in set(groups.images["object_id"])


def test_unknown_class_name_suggests_close_matches(folder: Path) -> None:
    with pytest.raises(UserError, match=r"'tulips'.*Did you mean 'tulip'"):
        _select(folder, class_names=["tulips"])


def test_empty_class_is_reported(folder: Path) -> None:
    assert _select(folder).empty_classes == ["empty"]


def test_every_file_is_kept_or_excluded_once(folder: Path) -> None:
    manifest, _ = scan_manifest(folder)
    groups = _select(folder)
    listed = list(groups.images["image_path"]) + list(groups.excluded["image_path"])
    assert sorted(listed) == sorted(manifest["image_path"])

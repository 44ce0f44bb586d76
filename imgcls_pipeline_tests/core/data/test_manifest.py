import os
import unicodedata
from pathlib import Path

import pytest

from imgcls_pipeline.core.data.manifest import (
    class_folders,
    folder_fingerprint,
    read_saved_manifest,
    scan_manifest,
    write_manifest,
)
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline_tests.imaging import make_photo_folder, write_photo


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    root = make_photo_folder(tmp_path / "data", {"cat": {"c1": 2}, "dog": {"d_1": 2}})
    write_photo(root / "cat" / "c2_1.PNG", fmt="PNG")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0")
    (root / "cat" / "._c1_1.jpg").write_bytes(b"apple double")
    (root / ".cache").mkdir()
    write_photo(root / ".cache" / "thumb_1.jpg")
    (root / "notes.txt").write_text("stray")
    write_photo(root / "dog" / "sub" / "d9_1.jpg")
    write_photo(root / "dog" / "no-sequence.jpg")
    (root / "dog" / "d2_1.txt").write_text("not an image")
    (root / "dog" / "d3_1.jpg").write_bytes(b"")
    (root / "empty_class").mkdir()
    nfd_class = unicodedata.normalize("NFD", "고양이")
    write_photo(root / nfd_class / "냥이_1.jpg")
    return root


def test_every_file_gets_a_row_and_a_status(messy_folder: Path) -> None:
    manifest, opened = scan_manifest(messy_folder)
    status = dict(zip(manifest["image_path"], manifest["status"], strict=True))
    assert status["cat/c1_1.jpg"] == "ok"
    assert status["cat/c2_1.PNG"] == "ok"
    assert status["cat/.DS_Store"] == "hidden"
    assert status["cat/._c1_1.jpg"] == "hidden"
    assert status[".cache/thumb_1.jpg"] == "hidden"
    assert status["notes.txt"] == "outside_class_folder"
    assert status["dog/sub/d9_1.jpg"] == "nested_folder"
    assert status["dog/no-sequence.jpg"] == "bad_name"
    assert status["dog/d2_1.txt"] == "not_an_image"
    assert status["dog/d3_1.jpg"] == "empty_file"
    assert opened == 7  # only well-placed, well-named images are opened
    row = manifest.set_index("image_path").loc["dog/d_1_2.jpg"]
    assert (row["class_name"], row["object_id"], row["sequence"]) == ("dog", "d_1", 2)
    assert (row["width"], row["height"]) == (96, 80)


def test_unicode_names_are_normalised(messy_folder: Path) -> None:
    manifest, _ = scan_manifest(messy_folder)
    korean = manifest[manifest["class_name"] == "고양이"]
    assert list(korean["object_id"]) == ["냥이"]
    assert "고양이" in class_folders(messy_folder)
    assert "empty_class" in class_folders(messy_folder)


def test_rescan_reopens_only_changed_files(messy_folder: Path) -> None:
    first, _ = scan_manifest(messy_folder)
    again, opened = scan_manifest(messy_folder, first)
    assert opened == 0
    assert again.equals(first)

    write_photo(messy_folder / "cat" / "c1_1.jpg", size=(300, 200), seed=5)
    os.utime(messy_folder / "cat" / "c1_1.jpg", ns=(1, 1))
    write_photo(messy_folder / "cat" / "c3_1.jpg")
    (messy_folder / "dog" / "d_1_2.jpg").unlink()
    changed, opened = scan_manifest(messy_folder, first)
    assert opened == 2
    rows = changed.set_index("image_path")
    assert rows.loc["cat/c1_1.jpg", "width"] == 300
    assert "cat/c3_1.jpg" in rows.index
    assert "dog/d_1_2.jpg" not in rows.index


def test_saved_manifest_round_trips_so_a_rescan_reopens_nothing(
    messy_folder: Path, tmp_path: Path
) -> None:
    first, _ = scan_manifest(messy_folder)
    path = write_manifest(tmp_path / "artifacts", first)
    assert path == tmp_path / "artifacts" / "manifest.parquet"
    assert [p.name for p in path.parent.iterdir()] == ["manifest.parquet"]
    saved = read_saved_manifest(tmp_path / "artifacts")
    assert saved is not None and saved.equals(first)
    assert scan_manifest(messy_folder, saved)[1] == 0


def test_a_missing_or_unreadable_saved_manifest_means_a_full_rescan(
    messy_folder: Path, tmp_path: Path
) -> None:
    assert read_saved_manifest(tmp_path / "artifacts") is None
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "manifest.parquet").write_bytes(b"half a parquet file")
    previous = read_saved_manifest(tmp_path / "artifacts")
    assert previous is None
    _, opened_from_scratch = scan_manifest(messy_folder)
    assert opened_from_scratch > 0
    assert scan_manifest(messy_folder, previous)[1] == opened_from_scratch


def test_missing_data_folder_is_one_clear_sentence(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"does not exist.*\{ID\}_\{sequence\}"):
        scan_manifest(tmp_path / "nope")


def test_fingerprint_changes_when_photos_change(messy_folder: Path) -> None:
    before = folder_fingerprint(messy_folder)
    assert folder_fingerprint(messy_folder) == before
    write_photo(messy_folder / "cat" / "c9_1.jpg")
    assert folder_fingerprint(messy_folder) != before


def test_names_that_are_not_utf8_are_excluded_not_fatal(tmp_path: Path) -> None:
    root = make_photo_folder(tmp_path / "data", {"cat": {"c1": 1}})
    cp949_name = "고양이_1.jpg".encode("cp949")  # as unzipped from a Windows archive
    source = (root / "cat" / "c1_1.jpg").read_bytes()
    with open(os.path.join(os.fsencode(root / "cat"), cp949_name), "wb") as handle:
        handle.write(source)
    manifest, _ = scan_manifest(root)
    odd = manifest[manifest["image_path"].str.contains("\ufffd")]
    assert list(odd["status"]) == ["undecodable_name"]
    assert folder_fingerprint(root)  # the sensor's fingerprint copes too
    manifest.to_parquet(tmp_path / "m.parquet")  # and the manifest can be stored


def test_symlink_loops_and_dangling_links_do_not_hang_or_crash(tmp_path: Path) -> None:
    root = make_photo_folder(tmp_path / "data", {"cat": {"c1": 2}})
    (root / "cat" / "loop").symlink_to(root / "cat", target_is_directory=True)
    (root / "cat" / "gone_1.jpg").symlink_to(tmp_path / "missing.jpg")
    manifest, _ = scan_manifest(root)
    status = dict(zip(manifest["image_path"], manifest["status"], strict=True))
    assert status["cat/c1_1.jpg"] == "ok"
    assert status["cat/gone_1.jpg"] == "unreadable"
    assert not any(path.startswith("cat/loop/loop") for path in status)

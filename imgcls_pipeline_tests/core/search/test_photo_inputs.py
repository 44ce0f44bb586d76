from pathlib import Path

from imgcls_pipeline.core.search.photo_inputs import find_photos


def test_folders_give_their_photos_and_list_the_other_files_as_skipped(tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("b.JPG", "sub/a.png", "notes.txt", "sub/data.csv", ".hidden.jpg"):
        (tmp_path / "in" / name).write_bytes(b"x")
    found = find_photos([str(tmp_path / "in"), str(tmp_path / "named.txt")])
    assert found.photos == [
        tmp_path / "in" / "b.JPG",
        tmp_path / "in" / "sub" / "a.png",
        tmp_path / "named.txt",  # named on the command line: tried, and reported if unreadable
    ]
    assert found.skipped == [tmp_path / "in" / "notes.txt", tmp_path / "in" / "sub" / "data.csv"]

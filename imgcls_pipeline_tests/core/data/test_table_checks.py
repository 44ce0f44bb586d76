"""Split tables are users' files: every rule is attacked here through ``read_split``, the one
reader that training, embeddings, the index and evaluation use."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from imgcls_pipeline.core.data import split_files
from imgcls_pipeline.core.data.table_checks import check_image_paths, path_problem
from imgcls_pipeline.core.errors import UserError

HEADER = "image_path,class_name,object_id,sequence,width,height\n"
GOOD = {
    "train": "cat/c1_1.jpg,cat,c1,1,64,64\ncat/c1_2.jpg,cat,c1,2,64,64\ndog/d1_1.jpg,dog,d1,1,64,64\n",
    "val": "cat/c2_1.jpg,cat,c2,1,64,64\n",
    "test": "dog/d2_1.jpg,dog,d2,1,64,64\n",
}


def write(folder: Path, **rows: str) -> Path:
    folder.mkdir(exist_ok=True)
    for split, body in {**GOOD, **rows}.items():
        (folder / f"{split}.csv").write_text(HEADER + body, encoding="utf-8")
    return folder


def refused(folder: Path, split: str = "train") -> str:
    with pytest.raises(UserError) as caught:
        split_files.read_split(folder, split)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_good_tables_read_typed(tmp_path):
    train = split_files.read_split(write(tmp_path), "train")
    assert train["image_path"].tolist() == ["cat/c1_1.jpg", "cat/c1_2.jpg", "dog/d1_1.jpg"]
    assert train.dtypes[["sequence", "width", "height"]].tolist() == ["int64"] * 3
    assert train["object_id"].tolist() == ["c1", "c1", "d1"]


@pytest.mark.parametrize(
    ("image_path", "problem"),
    [
        ("../../../etc/passwd", "has a '..' component"),
        ("cat/../../secret.jpg", "has a '..' component"),
        ("/etc/passwd", "is absolute"),
        ("/home/u/data/cat/c9_1.jpg", "is absolute"),
        ("C:/photos/c9_1.jpg", "is absolute"),
        ("..\\..\\windows\\c9_1.jpg", "has a '..' component"),
        ("cat//c9_1.jpg", "has an empty or '.' component"),
        ("./cat/c9_1.jpg", "has an empty or '.' component"),
    ],
)
def test_a_path_outside_the_data_folder_is_refused_naming_file_and_line(
    tmp_path, image_path, problem
):
    body = GOOD["train"] + f"{image_path},cat,c9,1,64,64\n"
    message = refused(write(tmp_path, train=body))
    assert f"{tmp_path / 'train.csv'} line 5: image_path {image_path!r} {problem}" in message
    assert "fix or delete that row" in message


def test_the_other_tables_are_checked_too_when_one_split_is_read(tmp_path):
    folder = write(tmp_path, test="/etc/passwd,dog,d2,1,64,64\n")
    assert "test.csv line 2: image_path '/etc/passwd' is absolute" in refused(folder, "val")


def test_names_that_merely_contain_dots_are_allowed():
    for name in ("cat/..c1_1.jpg", "cat/c1..x_1.jpg", "cat/.c1_1.jpg", "고양이/c1_1.jpg"):
        assert path_problem(name) is None


def test_a_duplicated_row_is_refused_naming_both_lines(tmp_path):
    body = GOOD["train"] + "cat/c1_2.jpg,cat,c1,2,64,64\n"
    message = refused(write(tmp_path, train=body))
    assert "train.csv line 5: image_path 'cat/c1_2.jpg' is listed a second time" in message
    assert "(first on line 3)" in message


def test_an_id_in_train_and_test_is_leakage_naming_both_files(tmp_path):
    folder = write(tmp_path, test=GOOD["test"] + "cat/c1_3.jpg,cat,c1,3,64,64\n")
    for split in ("train", "val", "test"):  # whichever split is read
        message = refused(folder, split)
        assert "The ID 'c1' (class 'cat') is in two splits" in message
        assert f"{tmp_path / 'train.csv'} line 2 and {tmp_path / 'test.csv'} line 3" in message
        assert "leakage" in message and "delete its rows from one of the two files" in message


def test_one_photo_in_two_splits_is_leakage_whatever_its_id(tmp_path):
    folder = write(tmp_path, val=GOOD["val"] + "dog/d1_1.jpg,dog,renamed,1,64,64\n")
    assert "The photo 'dog/d1_1.jpg' is in two splits" in refused(folder)


def test_a_missing_column_names_it(tmp_path):
    write(tmp_path)
    (tmp_path / "val.csv").write_text("image_path,class_name\ncat/c2_1.jpg,cat\n")
    assert "val.csv' lacks the column(s) object_id, sequence, width, height" in refused(tmp_path)


@pytest.mark.parametrize(
    ("row", "complaint"),
    [
        ("cat/c9_1.jpg,cat,c9,1,wide,64", "width 'wide' is not a whole number ≥ 1"),
        ("cat/c9_1.jpg,cat,c9,1,64,0", "height '0' is not a whole number ≥ 1"),
        ("cat/c9_1.jpg,cat,c9,1.5,64,64", "sequence '1.5' is not a whole number ≥ 0"),
        ("cat/c9_1.jpg,cat,,1,64,64", "object_id '' is empty"),
        ("cat/c9_1.jpg, ,c9,1,64,64", "class_name ' ' is empty"),
    ],
)
def test_a_wrong_type_names_the_column_and_line(tmp_path, row, complaint):
    message = refused(write(tmp_path, train=GOOD["train"] + row + "\n"))
    assert f"train.csv line 5: {complaint}" in message


def test_line_numbers_are_what_an_editor_shows(tmp_path):
    # A blank line (pandas skips it) and a quoted value over two lines come before the bad row.
    body = (
        'cat/c1_1.jpg,cat,c1,1,64,64\n\n"cat/c1_2.jpg",cat,"c\n1",2,64,64\n/abs.jpg,cat,c7,1,9,9\n'
    )
    folder = write(tmp_path, train=body)
    assert "train.csv line 6: image_path '/abs.jpg' is absolute" in refused(folder)


def test_a_missing_table_is_named(tmp_path):
    write(tmp_path)
    (tmp_path / "test.csv").unlink()
    assert split_files.read_split(tmp_path, "val")["object_id"].tolist() == ["c2"]
    assert "test.csv' is missing: run `imgcls split`" in refused(tmp_path, "test")


def test_a_split_rerun_refuses_a_leaked_id_rather_than_moving_it(tmp_path):
    # Today's split tables decide where an ID stays; an ID in two of them is ambiguous.
    folder = write(tmp_path, test=GOOD["test"] + "cat/c1_3.jpg,cat,c1,3,64,64\n")
    with pytest.raises(UserError, match=r"The ID 'c1' \(class 'cat'\) is in two splits") as caught:
        split_files.previous_assignment_on_disk(folder)
    assert "train.csv line 2" in str(caught.value) and "test.csv line 3" in str(caught.value)


def test_a_split_rerun_replaces_unsafe_rows_instead_of_refusing(tmp_path):
    # The new tables are written from the data folder, so a bad row there is no obstacle.
    folder = write(tmp_path, train=GOOD["train"] + "../../etc/passwd,cat,c1,9,x,64\n")
    assert split_files.previous_assignment_on_disk(folder) == {
        "c1": "train",
        "d1": "train",
        "c2": "val",
        "d2": "test",
    }


def test_gallery_style_tables_get_the_same_path_rules(tmp_path):
    table = tmp_path / "gallery.csv"
    pd.DataFrame({"image_path": ["cat/a_1.jpg", "/etc/shadow"]}).to_csv(table, index=False)
    with pytest.raises(UserError, match=r"gallery\.csv line 3: image_path '/etc/shadow' is abs"):
        check_image_paths(pd.read_csv(table, dtype=str), table)


def test_predict_and_the_report_never_follow_a_gallery_row_outside_the_data_folder(tmp_path):
    import numpy as np

    from imgcls_pipeline.core.search.index import build_index, load_index, save_index

    gallery = pd.DataFrame(
        {"image_path": ["cat/a_1.jpg", "dog/b_1.jpg"], "class_name": ["cat", "dog"]}
    ).assign(object_id=["a", "b"])
    vectors = np.eye(2, 4, dtype=np.float32)
    save_index(
        build_index(vectors),
        gallery,
        tmp_path,
        checkpoint="m",
        checkpoint_sha256="0",
        index_type="flat",
    )
    assert load_index(tmp_path)[1]["image_path"].tolist() == ["cat/a_1.jpg", "dog/b_1.jpg"]
    csv_file = tmp_path / "gallery.csv"
    csv_file.write_text(csv_file.read_text().replace("dog/b_1.jpg", "../../../etc/passwd"))
    with pytest.raises(UserError, match=r"gallery\.csv line 3: .* has a '\.\.' component"):
        load_index(tmp_path)


def test_no_tables_yet_or_only_one_is_no_leakage(tmp_path):
    assert split_files.previous_assignment_on_disk(tmp_path) == {}
    write(tmp_path)
    for split in ("val", "test"):
        (tmp_path / f"{split}.csv").unlink()
    assert split_files.read_split(tmp_path, "train")["object_id"].tolist() == ["c1", "c1", "d1"]

"""``imgcls split`` again over tables where one ID sits in two splits: it refuses, naming the ID
and both files, and moves nothing (a silent choice would either keep the leak or undo an edit)."""

from pathlib import Path

from imgcls_pipeline.cli import main
from imgcls_pipeline_tests.imaging import make_photo_folder, uniform_layout


def test_split_rerun_refuses_an_id_in_two_splits_and_changes_nothing(tmp_path: Path, capsys):
    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 6, 2), (48, 48))
    splits = tmp_path / "splits"
    argv = ["split", "--data_dir", str(data), "--output_dir", str(splits)]
    argv += ["--artifacts_dir", str(tmp_path / "artifacts"), "--min_image_size=32"]
    assert main(argv) == 0
    train_rows = (splits / "train.csv").read_text().splitlines()
    object_id = train_rows[1].split(",")[2]
    with open(splits / "test.csv", "a") as test_csv:  # a hand edit that copied instead of moved
        test_csv.write(train_rows[1] + "\n")
    before = {p.name: p.read_bytes() for p in splits.iterdir()}
    capsys.readouterr()

    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"The ID '{object_id}'" in error and "is in two splits" in error
    assert f"{splits / 'train.csv'} line 2" in error and f"{splits / 'test.csv'} line " in error
    assert {p.name: p.read_bytes() for p in splits.iterdir()} == before

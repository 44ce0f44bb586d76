from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from imgcls_pipeline.core.data import split_files
from imgcls_pipeline.core.data.groups import IMAGE_COLUMNS
from imgcls_pipeline.core.errors import UserError


def write_tables(folder: Path) -> pd.DataFrame:
    empty = pd.DataFrame(columns=IMAGE_COLUMNS)
    excluded = pd.DataFrame(
        {
            "image_path": ["cat/007_1.jpg", "dog/x.txt"],
            "reason": ["too_small", "not_an_image"],
            "detail": ["", "NA"],
        }
    )
    split_files.write_split_files(folder, {"train": empty, "val": empty, "test": empty}, excluded)
    return excluded


def test_excluded_round_trips_as_text(tmp_path):
    excluded = write_tables(tmp_path)
    read = split_files.read_excluded(tmp_path)
    pd.testing.assert_frame_equal(read, excluded)
    assert read["detail"].tolist() == ["", "NA"]  # no NA guessing: "NA" stays the text it was


def test_excluded_missing_or_foreign_is_a_user_error_naming_it(tmp_path):
    with pytest.raises(UserError, match=r"excluded\.csv' is missing: run `imgcls split`"):
        split_files.read_excluded(tmp_path)
    (tmp_path / "excluded.csv").write_text("path,why\na,b\n")
    with pytest.raises(UserError, match=r"excluded\.csv' lacks the column\(s\) image_path"):
        split_files.read_excluded(tmp_path)


def test_split_settings_round_trip_in_the_documented_layout(tmp_path):
    assert split_files.read_split_settings(tmp_path) is None
    ratios = {"train": 0.7, "val": 0.15, "test": 0.15}
    split_files.write_split_settings(tmp_path, ratios, 42)
    assert split_files.read_split_settings(tmp_path) == {**ratios, "seed": 42}
    text = (tmp_path / "split_settings.json").read_text()
    assert text == json.dumps({**ratios, "seed": 42}, indent=2)
    assert [p.name for p in tmp_path.iterdir()] == ["split_settings.json"]


def test_corrupt_split_settings_are_a_user_error_naming_the_file(tmp_path):
    (tmp_path / "split_settings.json").write_text("{0.7, 0.15")
    with pytest.raises(UserError, match=r"split_settings\.json is not a readable") as caught:
        split_files.read_split_settings(tmp_path)
    assert "\n" not in str(caught.value)

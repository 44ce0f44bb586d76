from __future__ import annotations

import json

import pandas as pd
import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.search.predictions_store import (
    Prediction,
    check_output_path,
    prediction_rows,
    write_predictions,
)

NEIGHBOURS = [
    {"image_path": "개/001_1.jpg", "class_name": "개", "distance": 0.125},
    {"image_path": "cat/002_1.jpg", "class_name": "cat", "distance": 0.5},
]
PREDICTIONS = [
    Prediction("new/dog.jpg", "개", 0.666666, NEIGHBOURS),
    Prediction("new/broken.jpg", error="Cannot read image new/broken.jpg."),
]


def test_rows_round_the_confidence_and_keep_the_json_key_order():
    rows = prediction_rows(PREDICTIONS)
    assert rows[0] == {
        "image_path": "new/dog.jpg",
        "predicted_class": "개",
        "confidence": 0.6667,
        "neighbours": NEIGHBOURS,
        "error": None,
    }
    assert list(rows[1]) == ["image_path", "predicted_class", "confidence", "neighbours", "error"]


def test_json_file_is_the_rows_as_indented_utf8(tmp_path):
    path = tmp_path / "out.JSON"
    write_predictions(path, prediction_rows(PREDICTIONS))
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == prediction_rows(PREDICTIONS)
    assert '"개"' in text and text.startswith('[\n  {\n    "image_path": "new/dog.jpg"')


def test_csv_file_has_neighbours_as_json_text_and_an_empty_error_when_read(tmp_path):
    path = tmp_path / "out.csv"
    write_predictions(path, prediction_rows(PREDICTIONS))
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(frame.columns) == [
        "image_path",
        "predicted_class",
        "confidence",
        "error",
        "neighbours",
    ]
    assert frame["error"].tolist() == ["", "Cannot read image new/broken.jpg."]
    assert frame["confidence"].tolist() == ["0.6667", "0.0"]
    assert json.loads(frame["neighbours"][0]) == NEIGHBOURS
    assert json.loads(frame["neighbours"][1]) == []


@pytest.mark.parametrize("name", ["out.txt", "out"])
def test_an_output_name_without_a_format_is_refused_before_any_work(tmp_path, name):
    with pytest.raises(UserError, match=rf"^--output .*{name} must end in \.csv or \.json\.$"):
        check_output_path(tmp_path / name)
    assert check_output_path(tmp_path / "a.csv") == tmp_path / "a.csv"

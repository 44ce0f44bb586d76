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
    {"image_path": "개/001_1.jpg", "class_name": "개", "similarity": 0.9375},
    {"image_path": "cat/002_1.jpg", "class_name": "cat", "similarity": 0.75},
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


def test_csv_file_has_flat_neighbour_columns_and_an_empty_error_when_read(tmp_path):
    path = tmp_path / "out.csv"
    write_predictions(path, prediction_rows(PREDICTIONS))
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(frame.columns) == [
        "image_path",
        "predicted_class",
        "confidence",
        "neighbour_1_path",
        "neighbour_1_class",
        "neighbour_1_similarity",
        "neighbour_2_path",
        "neighbour_2_class",
        "neighbour_2_similarity",
        "error",
    ]
    dog, broken = frame.to_dict("records")
    assert (dog["neighbour_1_path"], dog["neighbour_1_class"]) == ("개/001_1.jpg", "개")
    assert (dog["neighbour_2_similarity"], dog["error"]) == ("0.75", "")
    assert broken["error"] == "Cannot read image new/broken.jpg."
    assert broken["neighbour_1_path"] == "" and broken["confidence"] == "0.0"


@pytest.mark.parametrize("name", ["out.txt", "out"])
def test_an_output_name_without_a_format_is_refused_before_any_work(tmp_path, name):
    with pytest.raises(UserError, match=rf"^--output .*{name} must end in \.csv or \.json\.$"):
        check_output_path(tmp_path / name)
    assert check_output_path(tmp_path / "a.csv") == tmp_path / "a.csv"

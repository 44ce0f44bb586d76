from __future__ import annotations

import json

import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.search import evaluation_store as store

METRICS = {"recall@1": 0.75, "accuracy": 0.5, "classes": ["개", "cat"], "per_class": {}}


def test_round_trip_with_split_and_settings(tmp_path):
    path = store.write_evaluation(tmp_path, "val", METRICS, min_val_recall_at_1=0.6)
    assert path == tmp_path / "val.json"
    assert store.read_evaluation(tmp_path, "val") == {
        **METRICS,
        "split": "val",
        "settings": {"min_val_recall_at_1": 0.6},
    }
    assert [p.name for p in tmp_path.iterdir()] == ["val.json"]  # no temporary file left


def test_report_is_indented_utf8_json_with_class_names_as_written(tmp_path):
    store.write_evaluation(tmp_path, "test", METRICS, min_val_recall_at_1=0.0)
    text = (tmp_path / "test.json").read_text(encoding="utf-8")
    assert '"개"' in text and text.startswith('{\n  "recall@1": 0.75')
    assert list(json.loads(text))[-2:] == ["split", "settings"]


def test_a_split_not_evaluated_reads_as_none(tmp_path):
    assert store.read_evaluation(tmp_path, "test") is None


@pytest.mark.parametrize("text", ["{", "3"])
def test_a_corrupt_report_is_a_user_error_naming_it(tmp_path, text):
    (tmp_path / "val.json").write_text(text)
    with pytest.raises(UserError, match=r"val\.json is not a readable evaluation report") as caught:
        store.read_evaluation(tmp_path, "val")
    assert "\n" not in str(caught.value)

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


def test_an_output_report_names_its_checkpoint_where_the_assets_name_their_settings(tmp_path):
    target = tmp_path / "out" / "report.json"
    target.parent.mkdir()
    assert store.write_report(target, METRICS, "test", checkpoint="ck/best_model.pt") == target
    text = target.read_text(encoding="utf-8")
    assert json.loads(text) == {**METRICS, "split": "test", "checkpoint": "ck/best_model.pt"}
    assert list(json.loads(text))[-2:] == ["split", "checkpoint"]
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False)


def test_metrics_markdown_table_lists_scalars_and_worst_classes_first():
    metrics = {
        "recall@1": 0.91234,
        "map@r": None,
        "num_queries": 3,
        "per_class": {
            "cat": {"accuracy": 1.0, "recall@1": 1.0, "count": 1},
            "do|g": {"accuracy": 0.5, "recall@1": 0.5, "count": 2},
        },
        "confusion_matrix": [[1, 0], [1, 1]],
        "classes": ["cat", "do|g"],
        "split": "val",
        "checkpoint": "best_model.pt",
    }
    table = store.metrics_markdown_table(metrics)
    assert "| recall@1 | 0.9123 |" in table
    assert "| map@r | n/a |" in table
    assert "| num_queries | 3 |" in table
    assert "confusion_matrix" not in table and "best_model.pt" not in table
    assert table.index("| do/g | 2 | 0.5000 | 0.5000 |") < table.index("| cat |")


def test_metrics_markdown_table_shows_the_worst_classes_and_counts_the_rest():
    per_class = {
        f"c{i:03d}": {"accuracy": i / 100, "recall@1": 0.0, "count": 1}
        for i in range(store.PER_CLASS_TABLE_ROWS + 3)
    }
    table = store.metrics_markdown_table({"per_class": per_class})
    assert "| c000 |" in table and f"| c{store.PER_CLASS_TABLE_ROWS - 1:03d} |" in table
    assert f"| c{store.PER_CLASS_TABLE_ROWS:03d} |" not in table
    assert table.endswith("3 more classes not shown.")

from pathlib import Path

import pytest

from imgcls_pipeline.core.data.split_files import read_ledger
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.tables import read_json_object, read_table


def test_ids_stay_text(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("object_id,n\n007,1\nNA,2\n")
    frame = read_table(tmp_path / "t.csv", ["object_id"], remedy="fix it")
    assert list(frame["object_id"]) == ["007", "NA"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", r"cannot be read as a table \(EmptyDataError: "),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", r"cannot be read as a table \(\w+Error: "),
        (b"id,split\n1,train\n", r"lacks the column\(s\) object_id, class_name"),
    ],
)
def test_a_broken_ledger_is_one_sentence(tmp_path: Path, text: bytes, message: str) -> None:
    (tmp_path / "assignments.csv").write_bytes(text)
    with pytest.raises(UserError, match=message) as raised:
        read_ledger(tmp_path)
    assert "delete the whole splits folder" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_json_object_reads_back(tmp_path: Path) -> None:
    (tmp_path / "info.json").write_text('{"rows": 3, "name": "개"}', encoding="utf-8")
    assert read_json_object(tmp_path / "info.json", what="info file", remedy="fix it") == {
        "rows": 3,
        "name": "개",
    }


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "JSONDecodeError"),
        (b'{"rows": 3', "JSONDecodeError"),
        (b"\xff\xfe{}", "UnicodeDecodeError"),
        (b"[1, 2]", "not a JSON object"),
    ],
)
def test_anything_but_a_json_object_is_one_sentence(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    (tmp_path / "info.json").write_bytes(content)
    with pytest.raises(UserError) as raised:
        read_json_object(tmp_path / "info.json", what="info file", remedy="rebuild it")
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'info.json'} is not a readable info file (")
    assert reason in message and message.endswith("; rebuild it.") and "\n" not in message


def test_a_missing_json_file_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "info.json"
    with pytest.raises(UserError) as raised:
        read_json_object(path, what="info file", remedy="rebuild it")
    assert str(raised.value) == f"The info file {path} does not exist; rebuild it."

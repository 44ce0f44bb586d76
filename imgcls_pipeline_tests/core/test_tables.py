from pathlib import Path

import pytest

from imgcls_pipeline.core.data.split_files import read_ledger
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.tables import read_table


def test_ids_stay_text(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("object_id,n\n007,1\nNA,2\n")
    frame = read_table(tmp_path / "t.csv", ["object_id"], remedy="fix it")
    assert list(frame["object_id"]) == ["007", "NA"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "cannot be read as a table"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "cannot be read as a table"),
        (b"id,split\n1,train\n", r"lacks the column\(s\) object_id, class_name"),
    ],
)
def test_a_broken_ledger_is_one_sentence(tmp_path: Path, text: bytes, message: str) -> None:
    (tmp_path / "assignments.csv").write_bytes(text)
    with pytest.raises(UserError, match=message) as raised:
        read_ledger(tmp_path)
    assert "delete the whole splits folder" in str(raised.value)

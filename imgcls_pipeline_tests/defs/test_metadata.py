import base64
import re

import dagster as dg
import numpy as np
import pandas as pd

from imgcls_pipeline.defs import metadata


def test_floats_are_rounded_to_four_places_and_other_values_left_alone():
    assert metadata.rounded(0.8541666666666666) == 0.8542
    assert metadata.rounded(12.3456789) == 12.3457
    # A learning rate keeps its four significant digits rather than becoming 0.
    assert metadata.rounded(1.23456789e-5) == 1.235e-5 and metadata.rounded(-5e-7) == -5e-7
    assert metadata.rounded(0.0) == 0.0
    assert metadata.rounded(dg.MetadataValue.float(1 / 3)) == dg.MetadataValue.float(0.3333)
    assert metadata.rounded_metadata({"n": 7, "name": "val", "ok": True, "x": 2 / 3}) == {
        "n": 7,
        "name": "val",
        "ok": True,
        "x": 0.6667,
    }


def test_a_table_types_its_columns_and_rounds_its_cells():
    value = metadata.table(
        [
            {"class": "cat", "queries": np.int64(3), "accuracy": 0.123456, "seen": True},
            {"class": "dog", "queries": 1, "accuracy": None, "seen": False},
        ]
    )
    assert isinstance(value, dg.TableMetadataValue)
    types = {column.name: column.type for column in value.schema.columns}
    assert types == {"class": "string", "queries": "int", "accuracy": "float", "seen": "bool"}
    assert value.records[0].data == {"class": "cat", "queries": 3, "accuracy": 0.1235, "seen": True}
    assert value.records[1].data["accuracy"] is None


def test_an_empty_table_keeps_its_columns():
    value = metadata.table([], ["problem"])
    assert [c.name for c in value.schema.columns] == ["problem"] and value.records == []


def test_a_frame_becomes_a_table_with_its_index_as_the_first_column():
    frame = pd.DataFrame(
        {"train": [0.71234, np.nan], "val": [0.1, 0.2]}, index=pd.Index(["a", "b"], name="class")
    )
    value = metadata.frame_table(frame)
    assert [c.name for c in value.schema.columns] == ["class", "train", "val"]
    assert value.records[0].data == {"class": "a", "train": 0.7123, "val": 0.1}
    assert value.records[1].data["train"] is None  # NaN is not valid JSON: shown empty


def test_png_markdown_embeds_the_png_as_a_data_uri():
    png = b"\x89PNG\r\n\x1a\n-not-really-"
    text = metadata.png_markdown(png, "val [confusion] matrix")
    match = re.fullmatch(r"!\[(.*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert match is not None
    assert match.group(1) == "val (confusion) matrix"  # brackets would end the alt text early
    assert base64.b64decode(match.group(2)) == png
    assert metadata.figure(png, "x").value == metadata.png_markdown(png, "x")

"""Metadata values in the form the Dagster UI (1.13) shows best.

- Numbers rounded to ``DECIMALS`` places (4 significant digits for smaller ones, such as a
  learning rate): the UI prints a float with every digit it has.
- Tables as table metadata: the UI draws them inline on the asset page, on the check page and in
  the run log, where markdown longer than 1000 characters hides behind "[Show Markdown]".
- Figures as markdown with the PNG inlined as a data URI (there is no image metadata type, and the
  UI loads no image from the local disk): one click on "[Show Markdown]" opens one; the PNG files
  on disk are named beside them as paths.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

DECIMALS = 4
_COLUMN_TYPES = {bool: "bool", int: "int", float: "float"}


def rounded(value: Any) -> Any:
    """A float (plain or as float metadata) to ``DECIMALS`` places, or to ``DECIMALS`` significant
    digits when it is below 0.001 (1e-5 stays 1e-5); anything else unchanged."""
    if isinstance(value, dg.FloatMetadataValue) and value.value is not None:
        return dg.MetadataValue.float(rounded(value.value))
    if not isinstance(value, float) or not math.isfinite(value) or value == 0:
        return value
    if abs(value) >= 0.001:
        return round(value, DECIMALS)
    return round(value, DECIMALS - 1 - math.floor(math.log10(abs(value))))


def rounded_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {key: rounded(value) for key, value in metadata.items()}


def table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> dg.TableMetadataValue:
    """Rows of plain values as table metadata; ``columns`` (default: the first row's keys) in
    order, each typed by its first non-empty value, floats rounded."""
    names = list(columns if columns is not None else (rows[0] if rows else []))
    records = [dg.TableRecord({name: _cell(row.get(name)) for name in names}) for row in rows]
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, _column_type(name, rows)) for name in names]
    )
    return dg.MetadataValue.table(records=records, schema=schema)


def frame_table(
    frame: pd.DataFrame, index: bool = True, max_rows: int = 200
) -> dg.TableMetadataValue:
    """The first ``max_rows`` rows of ``frame`` (with its index as columns) as table metadata."""
    shown = frame.head(max_rows)
    if index:
        shown = shown.reset_index()
    shown.columns = [str(c) for c in shown.columns]
    rows = [
        {name: _plain(value) for name, value in row.items()}
        for row in shown.to_dict(orient="records")
    ]
    return table(rows, list(shown.columns))


def png_markdown(png_bytes: bytes, alt: str) -> str:
    """Markdown image with the PNG inlined as a data URI."""
    label = alt.replace("[", "(").replace("]", ")")
    return f"![{label}](data:image/png;base64,{base64.b64encode(png_bytes).decode('ascii')})"


def figure(png_bytes: bytes, alt: str) -> dg.MarkdownMetadataValue:
    return dg.MetadataValue.md(png_markdown(png_bytes, alt))


def _cell(value: Any) -> Any:
    value = _plain(value)
    if value is None or isinstance(value, bool | int | float | str):
        return rounded(value)
    return str(value)


def _plain(value: Any) -> Any:
    """numpy and pandas scalars as Python ones; a missing value as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def _column_type(name: str, rows: Sequence[Mapping[str, Any]]) -> str:
    for row in rows:
        value = _plain(row.get(name))
        if value is not None:
            return _COLUMN_TYPES.get(type(value), "string")
    return "string"

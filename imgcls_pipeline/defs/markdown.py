"""Small helpers that turn tables into markdown for the Dagster UI."""

from __future__ import annotations

import pandas as pd


def frame_markdown(frame: pd.DataFrame, index: bool = True, max_rows: int = 200) -> str:
    """A markdown table (pandas' to_markdown needs tabulate, which we do not depend on)."""
    if frame.empty:
        return "_(none)_"
    shown = frame.head(max_rows)
    if index:
        shown = shown.reset_index()
    header = "| " + " | ".join(str(c) for c in shown.columns) + " |"
    rule = "| " + " | ".join("---" for _ in shown.columns) + " |"
    rows = [
        "| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.itertuples(index=False)
    ]
    more = [f"\n_… {len(frame) - max_rows} more rows_"] if len(frame) > max_rows else []
    return "\n".join([header, rule, *rows, *more])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e4 else f"{round(value, 4):g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def counts_markdown(counts: pd.Series, key: str, value: str = "count") -> str:
    return frame_markdown(counts.rename(value).rename_axis(key).to_frame())

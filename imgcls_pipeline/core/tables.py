"""Reading back the CSV tables this pipeline writes (splits, ledger, gallery)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from imgcls_pipeline.core.errors import UserError


def read_table(
    path: str | os.PathLike[str],
    columns: Sequence[str],
    *,
    remedy: str,
    dtype: Any | Mapping[str, Any] = str,
) -> pd.DataFrame:
    """``path`` with at least ``columns``; an unreadable or foreign file is one UserError naming
    it and ``remedy`` (what to do). IDs such as "007" stay text (no NA guessing)."""
    try:
        frame = pd.read_csv(path, dtype=dtype, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as error:  # ParserError, EmptyDataError, bad dtype
        raise UserError(f"'{path}' cannot be read as a table ({error}); {remedy}.") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"'{path}' lacks the column(s) {', '.join(missing)}; {remedy}.")
    return frame

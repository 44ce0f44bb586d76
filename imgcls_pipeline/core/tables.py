"""Reading back the files this pipeline writes: CSV tables (splits, ledger, gallery) and JSON
objects (split settings, embeddings and index info, evaluation reports)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from imgcls_pipeline.core.errors import UserError, describe


def read_table(
    path: str | os.PathLike[str],
    columns: Sequence[str],
    *,
    remedy: str,
    dtype: Any | Mapping[str, Any] = str,
) -> pd.DataFrame:
    """``path`` with at least ``columns``; an unreadable or foreign file is one UserError naming
    it and ``remedy`` (what to do). IDs such as "007" stay text (no NA guessing)."""
    import pandas as pd  # here, not at import: reading settings JSON must not load pandas

    try:
        frame = pd.read_csv(path, dtype=dtype, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as error:  # ParserError, EmptyDataError, bad dtype
        raise UserError(
            f"'{path}' cannot be read as a table ({describe(error)}); {remedy}."
        ) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"'{path}' lacks the column(s) {', '.join(missing)}; {remedy}.")
    return frame


def read_json_object(path: str | os.PathLike[str], *, what: str, remedy: str) -> dict[str, Any]:
    """The JSON object in ``path``; a missing file or anything else is one UserError naming it as
    ``what`` (a readable name for the file) and ``remedy``."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        raise UserError(f"The {what} {path} does not exist; {remedy}.") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, not an object
        raise UserError(f"{path} is not a readable {what} ({describe(error)}); {remedy}.") from None
    return value

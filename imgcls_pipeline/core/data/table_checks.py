"""What a split table (or the gallery table built from one) must hold before anything is read
through it: photos named inside the data folder, each once, no object in two splits, and the
documented columns and types.

The tables are users' files: edited by hand, shared, merged. A path is judged as written
(lexically), never by where it resolves on disk, so a class folder that is a symlink to another
disk stays allowed while ``../../etc/passwd`` or ``/home/x.jpg`` never reaches ``open()``.

Every violation is one ``UserError`` naming the file, the line a user sees in a text editor
(header = line 1) and what to do.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from imgcls_pipeline.core.errors import UserError

# Why a path is refused, tested in this order (the first that applies is named).
_PATH_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^$"), "is empty"),
    (re.compile(r"\x00"), "contains a NUL character"),
    (re.compile(r"^[/\\]|^[A-Za-z]:"), "is absolute"),
    (re.compile(r"(?:^|[/\\])\.\.(?:[/\\]|$)"), "has a '..' component"),
    (re.compile(r"(?:^|[/\\])\.?(?:[/\\]|$)"), "has an empty or '.' component"),
]
_ANY_PATH_PROBLEM = re.compile("|".join(f"(?:{rule.pattern})" for rule, _ in _PATH_RULES))
_COUNT = re.compile(r"\d+")
_POSITIVE = re.compile(r"0*[1-9]\d*")
_REWRITE = "run `imgcls split` again to rewrite the tables from the data folder"


def path_problem(image_path: str) -> str | None:
    """Why ``image_path`` may not be read relative to the data folder, or None when it may."""
    for rule, problem in _PATH_RULES:
        if rule.search(image_path):
            return problem
    return None


def check_image_paths(frame: pd.DataFrame, path: Path, remedy: str = _REWRITE) -> None:
    """Every ``image_path`` relative, plain names only (no ``..``, ``.``, empty part), and unique;
    ``remedy`` says how to get a correct table again."""
    paths = frame["image_path"].astype(str)
    bad = paths.str.contains(_ANY_PATH_PROBLEM)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        value = paths.iat[row]
        raise UserError(
            f"{_where(path, row)}: image_path {value!r} {path_problem(value)}, but a table "
            f"may only name a photo inside the data folder by a relative path such as "
            f"'plant/plant001_1.jpg'; fix or delete that row, or {remedy}."
        )
    later = paths.duplicated()
    if later.any():
        second = int(later.to_numpy().nonzero()[0][0])
        first = int((paths == paths.iat[second]).to_numpy().nonzero()[0][0])
        raise UserError(
            f"{_where(path, second)}: image_path {paths.iat[second]!r} is listed a second time "
            f"(first on line {_line(path, first)}), so that photo would count twice; "
            f"delete one of the two rows, or {remedy}."
        )


def check_split_table(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``frame`` (read as text) checked and typed as the README documents a split table:
    ``image_path`` (see ``check_image_paths``), non-empty ``class_name`` and ``object_id``,
    ``sequence`` a whole number ≥ 0, ``width`` and ``height`` whole numbers ≥ 1."""
    check_image_paths(frame, path)
    for column in ("class_name", "object_id"):
        _first_bad(frame, path, column, frame[column].str.strip() == "", "is empty")
    for column, pattern, wanted in (
        ("sequence", _COUNT, "a whole number ≥ 0"),
        ("width", _POSITIVE, "a whole number ≥ 1"),
        ("height", _POSITIVE, "a whole number ≥ 1"),
    ):
        bad = ~frame[column].str.fullmatch(pattern)
        _first_bad(frame, path, column, bad, f"is not {wanted}")
    return frame.astype({"sequence": "int64", "width": "int64", "height": "int64"})


def check_no_leakage(tables: Mapping[str, tuple[Path, pd.DataFrame]]) -> None:
    """No object_id and no photo in two split tables (``tables``: split → (file, rows)).

    An ID is one object wherever it is filed (the split step treats an ID under two classes as a
    label conflict), so an ID in train and test is the same object seen in training and measured
    in testing, whatever class each row gives it.
    """
    if len(tables) < 2:
        return
    for column, what in (("object_id", "ID"), ("image_path", "photo")):
        # Each table's distinct values with their first row, in split order: a value seen again
        # is in a second table.
        firsts = pd.concat(
            [
                pd.DataFrame({"value": frame[column].astype(str), "split": split})
                .assign(row=np.arange(len(frame)))
                .drop_duplicates("value")
                for split, (_, frame) in tables.items()
            ],
            ignore_index=True,
        )
        again = firsts["value"].duplicated()
        if not again.any():
            continue
        second = firsts[again].iloc[0]
        first = firsts[firsts["value"] == second["value"]].iloc[0]
        path, frame = tables[second["split"]]
        label = _id_label(frame, int(second["row"])) if column == "object_id" else ""
        raise UserError(
            f"The {what} {second['value']!r}{label} is in two splits, "
            f"{_where(tables[first['split']][0], int(first['row']))} and "
            f"{_where(path, int(second['row']))}, so the same object would be both learned and "
            f"measured (leakage); delete its rows from one of the two files (the split it keeps "
            f"is the one it stays in), then run `imgcls split` again."
        )


def line_numbers(path: Path) -> list[int]:
    """The line each data row of the CSV starts on, as an editor shows it (header = line 1).

    Computed only for an error message: a quoted value may span lines, and pandas skips blank
    lines, so "row index + 2" could point at the wrong line.
    """
    lines = []
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        ended = 0
        for number, record in enumerate(reader):
            if number > 0 and record:
                lines.append(ended + 1)
            ended = reader.line_num
    return lines


def _line(path: Path, row: int) -> int:
    lines = line_numbers(path)
    return lines[row] if row < len(lines) else row + 2


def _where(path: Path, row: int) -> str:
    return f"{path} line {_line(path, row)}"


def _id_label(frame: pd.DataFrame, row: int) -> str:
    return f" (class {frame['class_name'].iat[row]!r})" if "class_name" in frame else ""


def _first_bad(frame: pd.DataFrame, path: Path, column: str, bad: pd.Series, problem: str) -> None:
    if not bad.any():
        return
    row = int(bad.to_numpy().nonzero()[0][0])
    raise UserError(
        f"{_where(path, row)}: {column} {frame[column].iat[row]!r} {problem}, as the README's "
        f"split table format requires; fix or delete that row, or {_REWRITE}."
    )

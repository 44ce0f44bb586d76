"""The split files users read and keep: ``train.csv``, ``val.csv``, ``test.csv``, ``excluded.csv``,
``assignments.csv``, the ledger of every object_id ever given a split, and
``split_settings.json``, the ratios and seed the tables were last written with.

The ledger is what keeps splits stable: an ID that drops out for a while (its class left out of
``class_names``, a photo below ``min_image_size``, a label conflict) is absent from the split
tables, but when it comes back it returns to the split it had, never to another one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from imgcls_pipeline.core.atomic import write_csv_atomic, write_text_atomic
from imgcls_pipeline.core.data.groups import EXCLUDED_COLUMNS, IMAGE_COLUMNS
from imgcls_pipeline.core.data.splitting import SPLITS
from imgcls_pipeline.core.data.table_checks import check_no_leakage, check_split_table
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.tables import read_json_object, read_table

LEDGER_FILE = "assignments.csv"
LEDGER_COLUMNS = ["object_id", "class_name", "split"]
EXCLUDED_FILE = "excluded.csv"
SETTINGS_FILE = "split_settings.json"


def split_path(splits_dir: str | os.PathLike[str], split: str) -> Path:
    return Path(splits_dir) / f"{split}.csv"


def read_ledger(splits_dir: str | os.PathLike[str]) -> pd.DataFrame:
    path = Path(splits_dir) / LEDGER_FILE
    if not path.is_file():
        return pd.DataFrame(columns=LEDGER_COLUMNS)
    remedy = "restore it, or delete the whole splits folder to split everything afresh"
    return read_table(path, LEDGER_COLUMNS, remedy=remedy)[LEDGER_COLUMNS]


def previous_assignment_on_disk(splits_dir: str | os.PathLike[str]) -> dict[str, str]:
    """object_id → split for every ID ever assigned: the split tables first (what users see and
    may have edited), then the ledger for IDs that are out of the tables at the moment."""
    ledger = read_ledger(splits_dir)
    assignment = dict(zip(ledger["object_id"], ledger["split"], strict=True))
    for split, table in read_existing_splits(splits_dir).items():
        assignment.update(dict.fromkeys(table["object_id"].astype(str), split))
    return assignment


def write_ledger(
    splits_dir: str | os.PathLike[str],
    assignment: Mapping[str, str],
    id_classes: Mapping[str, str],
) -> None:
    """Add this run's assignment to the ledger; IDs absent this time keep their rows."""
    ledger = read_ledger(splits_dir)
    known_classes = dict(zip(ledger["object_id"], ledger["class_name"], strict=True))
    rows = {**dict(zip(ledger["object_id"], ledger["split"], strict=True)), **assignment}
    frame = pd.DataFrame(
        {
            "object_id": list(rows),
            "class_name": [id_classes.get(i, known_classes.get(i, "")) for i in rows],
            "split": list(rows.values()),
        }
    ).sort_values(["class_name", "object_id"])
    write_csv_atomic(Path(splits_dir) / LEDGER_FILE, frame)


def write_split_files(
    splits_dir: str | os.PathLike[str],
    tables: Mapping[str, pd.DataFrame],
    excluded: pd.DataFrame,
) -> dict[str, Path]:
    """Write each file atomically; returns the paths written."""
    folder = Path(splits_dir)
    paths = {}
    for split in SPLITS:
        paths[split] = split_path(folder, split)
        write_csv_atomic(paths[split], tables[split][IMAGE_COLUMNS])
    paths["excluded"] = folder / EXCLUDED_FILE
    write_csv_atomic(paths["excluded"], excluded[EXCLUDED_COLUMNS])
    return paths


def _missing(path: Path) -> UserError:
    return UserError(
        f"Split file '{path}' is missing: run `imgcls split` (or materialize the `splits` "
        f"asset) first, or point --splits_dir / IMGCLS_SPLITS_DIR at the folder holding it."
    )


_FOREIGN = "it was not written by this pipeline: move it away and run `imgcls split` again"


def read_split(splits_dir: str | os.PathLike[str], split: str) -> pd.DataFrame:
    """One split table, checked (``table_checks``) together with the other split tables on disk,
    so no object of it is in another split; a missing, malformed or unsafe file is one UserError
    naming it, the line and what to do."""
    return read_splits(splits_dir, [split])[split]


def read_splits(
    splits_dir: str | os.PathLike[str], wanted: Iterable[str]
) -> dict[str, pd.DataFrame]:
    """The ``wanted`` split tables (each must exist), each checked as ``read_split`` does."""
    wanted = list(wanted)
    for split in wanted:
        if not split_path(splits_dir, split).is_file():
            raise _missing(split_path(splits_dir, split))
    tables = {
        split: check_split_table(_read_text_table(path), path)
        for split, path in _present(splits_dir).items()
    }
    check_no_leakage({split: (split_path(splits_dir, split), t) for split, t in tables.items()})
    return {split: tables[split][IMAGE_COLUMNS] for split in wanted}


def read_excluded(splits_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """``excluded.csv``: every file in no split, with its reason; errors as ``read_split``."""
    path = Path(splits_dir) / EXCLUDED_FILE
    if not path.is_file():
        raise _missing(path)
    return read_table(path, EXCLUDED_COLUMNS, remedy=_FOREIGN)[EXCLUDED_COLUMNS]


def read_existing_splits(splits_dir: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """The split tables already on disk (empty dict when there are none yet), as text.

    Only what a new split keeps from them is checked: the columns, and that no object_id is in
    two of them. Which split such an ID belongs to is the user's call, so the split step refuses
    rather than picking one. Bad paths, duplicates or numbers are not refused here: the new
    tables are written from the data folder, which replaces those rows.
    """
    tables = {split: _read_text_table(path) for split, path in _present(splits_dir).items()}
    check_no_leakage({split: (split_path(splits_dir, split), t) for split, t in tables.items()})
    return tables


def _present(splits_dir: str | os.PathLike[str]) -> dict[str, Path]:
    paths = {split: split_path(splits_dir, split) for split in SPLITS}
    return {split: path for split, path in paths.items() if path.is_file()}


def _read_text_table(path: Path) -> pd.DataFrame:
    return read_table(path, IMAGE_COLUMNS, remedy=_FOREIGN)


def write_split_settings(
    splits_dir: str | os.PathLike[str], ratios: Mapping[str, float], seed: int
) -> None:
    settings = {**ratios, "seed": seed}
    write_text_atomic(Path(splits_dir) / SETTINGS_FILE, json.dumps(settings, indent=2))


def read_split_settings(splits_dir: str | os.PathLike[str]) -> dict[str, float | int] | None:
    """The ratios and ``seed`` the split files were last written with; None before the first
    split. An unreadable file is a UserError naming it."""
    path = Path(splits_dir) / SETTINGS_FILE
    if not path.is_file():
        return None
    remedy = "delete it (the next `imgcls split` writes it again)"
    return read_json_object(path, what="split settings file", remedy=remedy)

"""The image manifest: one row per file under the data folder, with what we know about it.

Only headers are read (no pixel decoding), and a re-scan reopens only files whose
(path, size, mtime) changed since the previous manifest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.image_header import read_header
from imgcls_pipeline.core.naming import is_image_extension, normalize_label, parse_image_name

MANIFEST_COLUMNS = [
    "image_path",
    "class_name",
    "object_id",
    "sequence",
    "width",
    "height",
    "file_size",
    "mtime_ns",
    "status",
    "detail",
]
LAYOUT_HELP = (
    "put one sub-folder per class in it, holding photos named {ID}_{sequence}.jpg "
    "(e.g. data/plant/plant001_1.jpg), or point --data_dir / IMGCLS_DATA_DIR at your photo folder"
)


@dataclass(frozen=True)
class FileStat:
    image_path: str  # POSIX, relative to the data folder
    file_size: int
    mtime_ns: int


def check_data_dir(data_dir: str | os.PathLike[str]) -> Path:
    path = Path(data_dir)
    if not path.exists():
        raise UserError(f"Data folder '{path}' does not exist: create it and {LAYOUT_HELP}.")
    if not path.is_dir():
        raise UserError(f"Data folder '{path}' is a file, not a folder: {LAYOUT_HELP}.")
    return path


def walk_files(data_dir: str | os.PathLike[str]) -> Iterator[FileStat]:
    """Every regular file below ``data_dir`` (hidden ones too, so none is dropped silently)."""
    root = check_data_dir(data_dir)
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                relative = f"{prefix}{entry.name}"
                if entry.is_dir(follow_symlinks=True):
                    stack.append((Path(entry.path), relative + "/"))
                elif entry.is_file(follow_symlinks=True):
                    stat = entry.stat(follow_symlinks=True)
                    yield FileStat(relative, stat.st_size, stat.st_mtime_ns)


def class_folders(data_dir: str | os.PathLike[str]) -> list[str]:
    """Class folder names (NFC), hidden folders excluded, whether or not they hold images."""
    root = check_data_dir(data_dir)
    return sorted(
        normalize_label(entry.name)
        for entry in os.scandir(root)
        if entry.is_dir(follow_symlinks=True) and not entry.name.startswith(".")
    )


def classify_location(image_path: str) -> tuple[str, str, str, int | None]:
    """(status, class_name, object_id, sequence) from the path alone; status ``ok`` = go read it."""
    parts = image_path.split("/")
    class_name = normalize_label(parts[0]) if len(parts) > 1 else ""
    if any(part.startswith(".") for part in parts):
        return "hidden", class_name, "", None
    if len(parts) == 1:
        return "outside_class_folder", "", "", None
    if len(parts) > 2:
        return "nested_folder", class_name, "", None
    if not is_image_extension(parts[1]):
        return "not_an_image", class_name, "", None
    parsed = parse_image_name(parts[1])
    if parsed is None:
        return "bad_name", class_name, "", None
    return "ok", class_name, parsed.object_id, parsed.sequence


def scan_manifest(
    data_dir: str | os.PathLike[str], previous: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, int]:
    """Build the manifest; rows of unchanged files are taken from ``previous``.

    Returns the manifest and how many files had their header opened.
    """
    root = check_data_dir(data_dir)
    known = _index_previous(previous)
    rows: list[dict] = []
    opened = 0
    for stat in walk_files(root):
        reused = known.get(stat.image_path)
        if (
            reused is not None
            and reused["file_size"] == stat.file_size
            and (reused["mtime_ns"] == stat.mtime_ns)
        ):
            rows.append(reused)
            continue
        status, class_name, object_id, sequence = classify_location(stat.image_path)
        row = {
            "image_path": stat.image_path,
            "class_name": class_name,
            "object_id": object_id,
            "sequence": sequence,
            "width": None,
            "height": None,
            "file_size": stat.file_size,
            "mtime_ns": stat.mtime_ns,
            "status": status,
            "detail": "",
        }
        if status == "ok":
            header = read_header(str(root / stat.image_path))
            opened += 1
            row.update(
                status=header.status, width=header.width, height=header.height, detail=header.detail
            )
        rows.append(row)
    return _as_frame(rows), opened


def _index_previous(previous: pd.DataFrame | None) -> dict[str, dict]:
    if previous is None or previous.empty:
        return {}
    if list(previous.columns) != MANIFEST_COLUMNS:
        return {}  # written by another version: rescan everything rather than trust it
    records = previous.astype(object).where(previous.notna(), None).to_dict("records")
    return {record["image_path"]: record for record in records}


def _as_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    for column in ("sequence", "width", "height"):
        frame[column] = frame[column].astype("Int64")
    for column in ("file_size", "mtime_ns"):
        frame[column] = frame[column].astype("int64")
    for column in ("image_path", "class_name", "object_id", "status", "detail"):
        frame[column] = frame[column].astype(str)
    return frame.sort_values("image_path", ignore_index=True)


def folder_fingerprint(data_dir: str | os.PathLike[str]) -> str:
    """A short hash of every file's (path, size, mtime): changes when photos are added,
    removed or changed. Used as the data version of the data folder."""
    digest = hashlib.sha256()
    count = 0
    for stat in walk_files(data_dir):
        digest.update(f"{stat.image_path}\0{stat.file_size}\0{stat.mtime_ns}\n".encode())
        count += 1
    return f"{count}-{digest.hexdigest()[:16]}"

"""The image manifest: one row per file under the data folder, with what we know about it.

Only headers are read (no pixel decoding), and a re-scan reopens only files whose
(path, size, mtime) changed since the previous manifest, kept in ``manifest.parquet``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from imgcls_pipeline.core.atomic import write_parquet_atomic
from imgcls_pipeline.core.data.image_header import quiet_pixel_warnings, read_header
from imgcls_pipeline.core.data.naming import is_image_extension, normalize_label, parse_image_name
from imgcls_pipeline.core.errors import UserError, describe
from imgcls_pipeline.core.progress import progress as progress_bar

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
MANIFEST_FILE = "manifest.parquet"  # under the artifacts folder
LAYOUT_HELP = (
    "put one sub-folder per class in it, holding photos named {ID}_{sequence}.jpg "
    "(e.g. data/plant/plant001_1.jpg), or point the project at your photo folder: data_dir in "
    "imgcls.yaml (the UI reads it), --data_dir or IMGCLS_DATA_DIR"
)


UNDECODABLE = "\ufffd"  # what _printable puts where a file name's bytes are not UTF-8


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
    """Every regular file below ``data_dir`` (hidden ones too, so none is dropped silently).

    Symlinked folders are followed once (a link loop is not walked twice); a folder that cannot
    be listed is reported as one entry ending in ``/`` with size -1.
    """
    root = os.fspath(check_data_dir(data_dir))
    stack = [(root, "")]
    seen_folders: set[tuple[int, int]] = set()
    while stack:
        folder, prefix = stack.pop()
        try:
            identity = os.stat(folder)
            if (identity.st_dev, identity.st_ino) in seen_folders:
                continue
            seen_folders.add((identity.st_dev, identity.st_ino))
            entries = list(os.scandir(folder))
        except OSError as error:
            if not prefix:
                raise UserError(
                    f"Data folder '{root}' cannot be read ({describe(error)}); check its "
                    "permissions."
                ) from None
            yield FileStat(prefix, -1, 0)
            continue
        for entry in entries:  # unsorted: callers sort, and sorting here costs a re-scan 10%
            relative = prefix + _printable(entry.name)
            try:
                if entry.is_dir(follow_symlinks=True):
                    stack.append((entry.path, relative + "/"))
                elif entry.is_file(follow_symlinks=True):
                    stat = entry.stat(follow_symlinks=True)
                    yield FileStat(relative, stat.st_size, stat.st_mtime_ns)
                else:
                    yield FileStat(relative, -1, 0)  # dangling symlink, socket, device...
            except OSError:
                yield FileStat(relative, -1, 0)  # e.g. a dangling or looping symlink


def _printable(name: str) -> str:
    """File names that are not UTF-8 (a CP949 name from a Windows zip) come back from the OS
    with surrogate escapes; show their bad bytes as U+FFFD so the name can be stored."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return name


def class_folders(data_dir: str | os.PathLike[str]) -> list[str]:
    """Class folder names (NFC), hidden folders excluded, whether or not they hold images."""
    root = check_data_dir(data_dir)
    return sorted(
        normalize_label(_printable(entry.name))
        for entry in os.scandir(root)
        if entry.is_dir(follow_symlinks=True) and not entry.name.startswith(".")
    )


def classify_location(image_path: str) -> tuple[str, str, str, int | None]:
    """(status, class_name, object_id, sequence) from the path alone; status ``ok`` = go read it."""
    parts = image_path.split("/")
    class_name = normalize_label(parts[0]) if len(parts) > 1 else ""
    if image_path.endswith("/"):
        return "unreadable_folder", class_name, "", None
    if UNDECODABLE in image_path:
        return "undecodable_name", class_name, "", None
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
    data_dir: str | os.PathLike[str], previous: pd.DataFrame | None = None, progress: bool = False
) -> tuple[pd.DataFrame, int]:
    """Build the manifest; rows of files whose (path, size, mtime) are unchanged since
    ``previous`` are taken from it without reopening the file.

    Returns the manifest and how many files had their header opened.
    """
    root = os.fspath(check_data_dir(data_dir))
    stats = list(walk_files(root))
    current = pd.DataFrame(
        {
            "image_path": [s.image_path for s in stats],
            "file_size": np.array([s.file_size for s in stats], dtype=np.int64),
            "mtime_ns": np.array([s.mtime_ns for s in stats], dtype=np.int64),
        }
    )
    reused = _unchanged_rows(current, previous)
    known = set(reused["image_path"].tolist())
    todo = current[[path not in known for path in current["image_path"].tolist()]]
    with quiet_pixel_warnings():
        rows, opened = _scan_rows(root, todo, progress)
    fresh = _typed(pd.DataFrame(rows, columns=MANIFEST_COLUMNS))
    parts = [frame for frame in (reused, fresh) if not frame.empty]
    manifest = pd.concat(parts, ignore_index=True) if parts else fresh
    return manifest.sort_values("image_path", ignore_index=True), opened


def _scan_rows(root: str, todo: pd.DataFrame, progress: bool) -> tuple[list[tuple], int]:
    """Manifest rows of the files in ``todo``, and how many headers were read for them."""
    rows = []
    opened = 0
    files = todo.itertuples(index=False)
    for image_path, file_size, mtime_ns in progress_bar(
        files, desc="scanning", unit="file", total=len(todo), enabled=progress
    ):
        status, class_name, object_id, sequence = classify_location(image_path)
        width = height = None
        detail = ""
        if status == "ok" and file_size < 0:
            status, detail = "unreadable", "cannot be opened (broken or looping symlink?)"
        if status == "ok":
            header = read_header(f"{root}/{image_path}")
            opened += 1
            status, width, height, detail = (
                header.status,
                header.width,
                header.height,
                header.detail,
            )
        rows.append(
            (
                image_path,
                class_name,
                object_id,
                sequence,
                width,
                height,
                file_size,
                mtime_ns,
                status,
                detail,
            )
        )
    return rows, opened


def _unchanged_rows(current: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    empty = _typed(pd.DataFrame(columns=MANIFEST_COLUMNS))
    if previous is None or previous.empty or list(previous.columns) != MANIFEST_COLUMNS:
        return empty  # nothing to reuse, or written by another version: rescan all
    joined = previous.merge(current, on="image_path", suffixes=("", "_now"))
    same = (joined["file_size"] == joined["file_size_now"]) & (
        joined["mtime_ns"] == joined["mtime_ns_now"]
    )
    return _typed(joined.loc[same, MANIFEST_COLUMNS].reset_index(drop=True))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(
        {
            "image_path": str,
            "class_name": str,
            "object_id": str,
            "sequence": "Int64",
            "width": "Int64",
            "height": "Int64",
            "file_size": "int64",
            "mtime_ns": "int64",
            "status": str,
            "detail": str,
        }
    )


def write_manifest(artifacts_dir: str | os.PathLike[str], manifest: pd.DataFrame) -> Path:
    path = Path(artifacts_dir) / MANIFEST_FILE
    write_parquet_atomic(path, manifest)
    return path


def read_saved_manifest(artifacts_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """The manifest of the previous scan, or None when there is none or it cannot be read: it
    only saves reopening files, so the scan then simply reads every header again."""
    path = Path(artifacts_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
        return None


def folder_fingerprint(data_dir: str | os.PathLike[str]) -> str:
    """A short hash of every file's (path, size, mtime): changes when photos are added,
    removed or changed. Used as the data version of the data folder."""
    return _fingerprint((s.image_path, s.file_size, s.mtime_ns) for s in walk_files(data_dir))


def manifest_fingerprint(manifest: pd.DataFrame) -> str:
    """The ``folder_fingerprint`` of the folder as it was when ``manifest`` was scanned."""
    columns = manifest[["image_path", "file_size", "mtime_ns"]]
    return _fingerprint(columns.itertuples(index=False, name=None))


def _fingerprint(entries: Iterable[tuple[str, int, int]]) -> str:
    digest = hashlib.sha256()
    count = 0
    for image_path, file_size, mtime_ns in sorted(entries):
        digest.update(f"{image_path}\0{file_size}\0{mtime_ns}\n".encode())
        count += 1
    return f"{count}-{digest.hexdigest()[:16]}"

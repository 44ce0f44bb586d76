"""Pre-flight: before hours of training or embedding, every photo the split tables list is on
disk and is still the file the split was made from.

One ``stat`` per photo, no decoding: a photo missing or changed since the manifest was scanned
(size or modification time differ) is found now, in one list, instead of as a crash at batch 2
or a silently different image. The fix is always the same: ``imgcls split`` rescans the folder
and rewrites the tables (missing photos leave them; changed ones are read again).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from imgcls_pipeline.core.data.manifest import MANIFEST_FILE, read_saved_manifest
from imgcls_pipeline.core.errors import UserError

SHOWN = 5  # problems named in the error; the rest are counted


@dataclass(frozen=True)
class Problem:
    table: str  # e.g. "train.csv"
    image_path: str
    what: str  # "missing", "not a file", "not readable", "changed since the split"


def preflight(
    tables: Mapping[str, pd.DataFrame],
    data_dir: str | os.PathLike[str],
    artifacts_dir: str | os.PathLike[str] | None = None,
) -> str:
    """Check every photo of ``tables`` (split → rows) under ``data_dir`` against the manifest
    in ``artifacts_dir`` (existence only when there is none); raise one UserError listing what
    is wrong, else return a line saying what was checked, for the log."""
    started = time.perf_counter()
    manifest = read_saved_manifest(artifacts_dir) if artifacts_dir is not None else None
    recorded = _recorded(manifest)
    root = os.fspath(data_dir)
    problems: list[Problem] = []
    checked = 0
    for split, frame in tables.items():
        for image_path in frame["image_path"].tolist():
            checked += 1
            # A plain string join: a Path per photo costs more than its stat.
            what = _problem(f"{root}/{image_path}", recorded, image_path)
            if what:
                problems.append(Problem(f"{split}.csv", image_path, what))
    if problems:
        manifest_file = Path(artifacts_dir) / MANIFEST_FILE if recorded is not None else None
        raise UserError(_describe(problems, checked, data_dir, manifest_file))
    against = (
        f"as recorded in {Path(artifacts_dir) / MANIFEST_FILE}"
        if recorded is not None
        else "present (no manifest to compare sizes and times with)"
    )
    return (
        f"Pre-flight: {checked:,} photos of {', '.join(tables)} {against} "
        f"({time.perf_counter() - started:.1f} s)."
    )


def _recorded(manifest: pd.DataFrame | None) -> dict[str, tuple[int, int]] | None:
    if manifest is None or not {"image_path", "file_size", "mtime_ns"} <= set(manifest.columns):
        return None
    return dict(
        zip(
            manifest["image_path"].tolist(),
            zip(manifest["file_size"].tolist(), manifest["mtime_ns"].tolist(), strict=True),
            strict=True,
        )
    )


def _problem(path: str, recorded: dict[str, tuple[int, int]] | None, image_path: str) -> str | None:
    try:
        info = os.stat(path)  # follows links: a class folder may live on another disk
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"cannot be looked at ({error.strerror or type(error).__name__})"
    if not stat.S_ISREG(info.st_mode):
        return "not a file"
    if not os.access(path, os.R_OK):
        return "not readable (permissions)"
    # A photo the manifest does not list says the manifest is not the one the split was made
    # from (another artifacts folder): it cannot judge that photo, existing is all we know.
    was = recorded.get(image_path) if recorded is not None else None
    if was is not None and was != (info.st_size, info.st_mtime_ns):
        return "changed since the split"
    return None


def _describe(
    problems: list[Problem],
    checked: int,
    data_dir: str | os.PathLike[str],
    manifest_file: Path | None,
) -> str:
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem.what] = counts.get(problem.what, 0) + 1
    summary = ", ".join(f"{n:,} {what}" for what, n in counts.items())
    shown = "; ".join(f"{p.table}: {p.image_path} ({p.what})" for p in problems[:SHOWN])
    more = f"; and {len(problems) - SHOWN:,} more" if len(problems) > SHOWN else ""
    against = f", compared with {manifest_file}" if manifest_file and "changed" in summary else ""
    return (
        f"{len(problems):,} of {checked:,} photos the split tables list cannot be used as they "
        f"are in {data_dir} ({summary}{against}): {shown}{more}; run `imgcls split` again so "
        f"the tables match the data folder (missing photos leave them, changed ones are read "
        f"again), then start again."
    )

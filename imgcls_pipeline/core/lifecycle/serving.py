"""Serving a bundle: the one atomic switch of ``<artifacts>/served``, then stale clean-up.

The switch is a new symlink made under a temporary name and renamed over ``served``
(``os.replace``, atomic on POSIX): a reader resolves either the old bundle or the new one, and a
kill -9 at any moment leaves one of the two served. Callers hold the artifacts folder's lock.

Clean-up removes every bundle that is not served, not the one served before it (a reader that
resolved ``served`` just before the switch is still reading it) and not built by a process that
is still running (it is being built, or built and about to be served). A bundle is first renamed to a temporary name and then deleted, so a kill midway leaves
an orphan that the next clean-up finishes, never a half-deleted bundle under its own name.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from imgcls_pipeline.core.atomic import is_orphan_temp_file
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.lifecycle.bundle_files import (
    BUNDLE_FILE,
    BUNDLES,
    PARTS,
    PRE_LIFECYCLE,
    PREVIOUS,
    SERVED,
    Bundle,
    previous_bundle_id,
    read_bundle,
)
from imgcls_pipeline.core.lifecycle.folders import (
    builder_alive,
    is_temp_folder,
    remove_orphan_folders,
    temp_folder,
    temp_name,
)


def serve(artifacts: Path, bundle: Bundle, *, log: Callable[[str], None] = print) -> None:
    """Serve ``bundle`` (a complete folder under ``<artifacts>/bundles``) in one atomic step."""
    artifacts = Path(artifacts)
    if bundle.folder.parent.resolve() != (artifacts / BUNDLES).resolve():
        raise ValueError(f"{bundle.folder} is not a bundle of {artifacts}")
    if not (bundle.folder / BUNDLE_FILE).is_file():
        raise UserError(
            f"The bundle {bundle.folder} is gone or incomplete, so it cannot be served; "
            "build it again (`imgcls promote VERSION`)."
        )
    _move_plain_folders(artifacts, log)
    served = artifacts / SERVED
    target = f"{BUNDLES}/{bundle.bundle_id}"
    if served.is_symlink() and os.readlink(served) != target:
        # Before the switch: a kill in between leaves previous == served, which is harmless.
        _link(artifacts / PREVIOUS, os.readlink(served))
    _link(served, target)
    for part in PARTS:
        if os.path.lexists(artifacts / part) and not (artifacts / part).is_symlink():
            continue  # a folder _move_plain_folders could not move: left for the user
        _link(artifacts / part, f"{SERVED}/{part}")
    remove_stale_bundles(artifacts)


def _link(path: Path, target: str) -> None:
    """``path`` becomes a symlink to ``target`` in one step, durable once this returns."""
    if path.is_symlink() and os.readlink(path) == target:
        return
    temp = path.parent / temp_name(path.name)
    os.symlink(target, temp)
    try:
        os.replace(temp, path)
    finally:
        if temp.is_symlink():
            temp.unlink()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself reaches the disk before we report it done
    finally:
        os.close(fd)


def _move_plain_folders(artifacts: Path, log: Callable[[str], None]) -> None:
    """A project made before bundles has plain ``embeddings/``, ``index/`` and ``evaluation/``
    folders where the links go: they are moved aside (never deleted) on the first switch."""
    for part in PARTS:
        plain = artifacts / part
        if not plain.is_dir() or plain.is_symlink():
            continue
        aside = artifacts / PRE_LIFECYCLE / part
        if aside.exists():
            continue  # moved already once; the user decides what to do with both
        aside.parent.mkdir(parents=True, exist_ok=True)
        plain.rename(aside)
        log(f"Moved {plain} (made before model versions) to {aside}; it is no longer used.")


def remove_stale_bundles(artifacts: Path) -> list[str]:
    """Delete the bundles that are neither served nor previous nor being built; their ids."""
    root = Path(artifacts) / BUNDLES
    keep = {
        Path(os.readlink(Path(artifacts) / SERVED)).name
        if (Path(artifacts) / SERVED).is_symlink()
        else None,
        previous_bundle_id(artifacts),
    }
    removed = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name in keep or is_temp_folder(folder) or not folder.is_dir():
            continue
        if _builder_may_serve(folder):
            continue
        discard_bundle(folder)
        removed.append(folder.name)
    remove_orphan_folders(root)
    _remove_orphan_links(Path(artifacts))
    return removed


def _remove_orphan_links(artifacts: Path) -> None:
    """Temporary symlinks of a switch killed before its rename."""
    for entry in artifacts.iterdir():
        if (
            entry.is_symlink()
            and is_temp_folder(entry)
            and is_orphan_temp_file(entry.name, unnamed_too=True)
        ):
            entry.unlink(missing_ok=True)


def _builder_may_serve(folder: Path) -> bool:
    try:
        return builder_alive(read_bundle(folder).builder)
    except UserError:
        return False  # no readable bundle.json: nobody can serve it


def discard_bundle(folder: Path) -> None:
    """Delete a bundle that is not served: renamed out of sight first, then removed."""
    if not folder.exists():
        return
    trash = temp_folder(folder.parent, "discarded")
    os.replace(folder, trash / folder.name)
    shutil.rmtree(trash, ignore_errors=True)

"""Building the image cache: decode each new or changed photo once, prune entries of vanished ones.

Incremental by construction: an entry's name is the hash of its photo's (path, size, mtime)
(``image_cache.entry_name``), so an unchanged photo finds its entry and is not opened, a changed
one gets a new entry, and an entry no listed photo names any more is removed. Decoding runs in
threads: Pillow releases the GIL while it decodes, resizes and encodes, so they use every core
without the start-up cost of processes.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from imgcls_pipeline.core.atomic import atomic_path, is_orphan_temp_file
from imgcls_pipeline.core.data.image_cache import ENTRY_SUFFIX, cache_side, entry_name
from imgcls_pipeline.core.data.images import UnreadableImage, load_rgb
from imgcls_pipeline.core.errors import UserError, describe
from imgcls_pipeline.core.locks import FolderLock
from imgcls_pipeline.core.progress import progress as progress_bar

JPEG_OPTIONS = {"format": "JPEG", "quality": 98, "subsampling": 0}  # why: see image_cache
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


@dataclass
class BuildReport:
    photos: int  # photos listed
    entries: int  # current entries after the build: photos training and embedding read from it
    new: int  # photos decoded and written by this build
    reused: int  # photos whose entry was already there
    pruned: int  # entries removed: their photo vanished, changed or left the split tables
    size_bytes: int  # every entry in the folder
    seconds: float
    failed: dict[str, str] = field(default_factory=dict)  # image_path → why it is not cached
    version: str = ""  # a hash of the current entries' names: changes when any photo does

    @property
    def hit_rate(self) -> float:
        """Share of the listed photos that will be read from the cache."""
        return self.entries / self.photos if self.photos else 0.0

    @property
    def images_per_second(self) -> float:
        return self.new / self.seconds if self.seconds > 0 else 0.0


def shrink(image: Image.Image, side: int) -> Image.Image:
    """``image`` with its short side brought down to ``side`` (never enlarged)."""
    width, height = image.size
    short = min(width, height)
    if short <= side:
        return image
    size = (max(1, round(width * side / short)), max(1, round(height * side / short)))
    return image.resize(size, Image.Resampling.LANCZOS)


def decode_for_cache(source: str | os.PathLike[str], side: int) -> Image.Image:
    """The photo as its cache entry holds it: opened, oriented and converted exactly as
    ``load_rgb`` does (JPEG draft and box reduction included), then shrunk to ``side``."""
    return shrink(load_rgb(source, side), side)


def build_cache(
    folder: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    image_paths: Sequence[str],
    image_size: int,
    *,
    threads: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> BuildReport:
    """Bring the cache ``folder`` up to date for ``image_paths`` (relative to ``data_dir``).

    Holds the folder's lock, so a second build refuses at once; readers need no lock. A photo
    that cannot be read is left out (``failed``) and training skips it as it would anyway.
    """
    started = time.perf_counter()
    folder = Path(folder)
    side = cache_side(image_size)
    with FolderLock(folder, "image cache folder"):
        wanted, failed = _wanted_entries(data_dir, image_paths)
        on_disk = _scan_entries(folder)
        todo = [name for name in wanted if name not in on_disk or not _is_whole(folder / name)]
        log(f"{len(wanted) - len(todo)} photos already cached, {len(todo)} to decode")
        threads = threads or len(os.sched_getaffinity(0))
        write = _entry_writer(folder, data_dir, wanted, side)
        pool = ThreadPoolExecutor(max_workers=threads)
        try:
            outcomes = progress_bar(
                pool.map(write, todo),
                desc="caching",
                unit="photo",
                total=len(todo),
                enabled=progress,
            )
            for name, reason in zip(todo, outcomes, strict=True):
                if reason:
                    failed[wanted[name][0]] = reason
        finally:
            # On Ctrl-C or a failed write, drop the queued photos instead of decoding them all.
            pool.shutdown(cancel_futures=True)
        stale = [name for name in on_disk if name not in wanted]
        for name in stale:
            (folder / name).unlink(missing_ok=True)
        current = sorted(
            name for name, (image_path, _) in wanted.items() if image_path not in failed
        )
        entries = _scan_entries(folder)
    failed_entries = len(wanted) - len(current)
    return BuildReport(
        photos=len(image_paths),
        entries=len(current),
        new=len(todo) - failed_entries,
        reused=len(wanted) - len(todo),
        pruned=len(stale),
        size_bytes=sum(entries.values()),
        seconds=time.perf_counter() - started,
        failed=failed,
        version=hashlib.sha256("\n".join(current).encode()).hexdigest()[:16],
    )


def _wanted_entries(
    data_dir: str | os.PathLike[str], image_paths: Sequence[str]
) -> tuple[dict[str, tuple[str, tuple[int, int]]], dict[str, str]]:
    """Entry name → (image_path, (size, mtime)) of every photo that can be stat'ed now."""
    wanted: dict[str, tuple[str, tuple[int, int]]] = {}
    failed: dict[str, str] = {}
    for image_path in image_paths:
        try:
            stat = os.stat(f"{data_dir}/{image_path}")
        except OSError as error:
            failed[image_path] = describe(error)
            continue
        name = entry_name(image_path, stat.st_size, stat.st_mtime_ns)
        wanted[name] = (image_path, (stat.st_size, stat.st_mtime_ns))
    return wanted, failed


def _entry_writer(
    folder: Path,
    data_dir: str | os.PathLike[str],
    wanted: dict[str, tuple[str, tuple[int, int]]],
    side: int,
) -> Callable[[str], str]:
    def write(name: str) -> str:
        """Write entry ``name``; return why it could not be, or '' when it was written."""
        image_path, fingerprint = wanted[name]
        source = f"{data_dir}/{image_path}"
        destination = folder / name
        try:
            image = decode_for_cache(source, side)
        except UnreadableImage as error:
            return error.reason
        try:
            with atomic_path(destination) as temp:
                image.save(temp, **JPEG_OPTIONS)
        except OSError as error:
            raise UserError(
                f"Cannot write the image cache entry {destination} ({describe(error)}); free "
                "space in the artifacts folder, or set image_cache: off."
            ) from None
        if _fingerprint(source) != fingerprint:
            # Rewritten while it was decoded: the entry may hold either version, so drop it.
            destination.unlink(missing_ok=True)
            return "changed while it was being cached; materialize image_cache again"
        return ""

    return write


def _fingerprint(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _scan_entries(folder: Path) -> dict[str, int]:
    """Entry name → size in bytes of every entry in ``folder``; removes temporary files of
    writers that died (the caller holds the folder's lock, so no writer of ours is alive)."""
    entries: dict[str, int] = {}
    for sub in os.scandir(folder):
        if not sub.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(sub.path):
            if entry.name.endswith(ENTRY_SUFFIX):
                entries[f"{sub.name}/{entry.name}"] = entry.stat().st_size
            elif is_orphan_temp_file(entry.name, unnamed_too=True):
                os.unlink(entry.path)
    return entries


def _is_whole(path: Path) -> bool:
    """Whether a JPEG entry starts and ends as a JPEG does: one cut short (a crash of the machine
    before the file reached the disk) is rewritten instead of being reused."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(2)
            handle.seek(-2, os.SEEK_END)
            return start == _JPEG_START and handle.read(2) == _JPEG_END
    except OSError:
        return False

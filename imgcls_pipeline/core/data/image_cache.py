"""The decode-once image cache: each photo decoded once, upright, shrunk to about 1.15 × image_size.

A 12-megapixel phone JPEG costs a loader core about 40 ms to decode even with libjpeg's
reduced scales (``load_rgb``); the same photo stored at 552 × 736 (for image_size 480) decodes in
under 5 ms (``benchmarks/bench_data_path.py``: 24 against 213 images/s per core). The cache keeps
one such copy per photo under ``artifacts/image_cache/<image_size>/``, built by
``image_cache_build`` (the ``image_cache`` asset) and read here by training and embedding.

Entry format: baseline JPEG, quality 98, 4:4:4 chroma (no colour subsampling), ~250 kB at
552 × 736. Measured against the alternatives at that size: WebP and PNG decode 5–10× slower; raw
uint8 arrays (``np.memmap``) are 1.2 MB each, 5× the disk and page cache, and photos of different
shapes would need an index beside them. Quality 95 decodes 30 % faster but moved embeddings of a
deliberately noise-sensitive test model to cosine 0.991 of direct decoding; 98 keeps them at
≥ 0.997 (``test_embed_from_cache``), and chroma subsampling (4:2:0) was far worse (down to 0.75).
The short side is ``cache_side(image_size)``, slightly above image_size so that random crops and
the evaluation resize still scale down, never up; a photo already smaller is stored at its own
size.

Entry names are a hash of the photo's manifest fingerprint, ``image_path\\0file_size\\0mtime_ns``
(the triple the manifest and the pre-flight compare): a reader stats the photo, derives the name
and opens that file, so an entry is current by construction and a changed photo simply misses.
Entries are written atomically (``core.atomic``) and never changed in place, so any number of
DataLoader workers may read while the asset adds or prunes entries; a missing, pruned or broken
entry makes the reader decode the photo itself, as without a cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from imgcls_pipeline.core.data.images import to_rgb

FOLDER = "image_cache"  # under the artifacts folder, one sub-folder per image_size
SIDE_FACTOR = 1.15
# "auto" builds the cache when the median photo's short side is at least this many cache sides:
# below it a photo decodes (with draft) nearly as fast as its cache entry would.
AUTO_MIN_RATIO = 2.0
ENTRY_SUFFIX = ".jpg"

CacheMode = Literal["auto", "on", "off"]
_log = logging.getLogger(__name__)
_warned: set[str] = set()  # one line per broken entry per process


def cache_side(image_size: int) -> int:
    """The short side of a cache entry for ``image_size``."""
    return round(image_size * SIDE_FACTOR)


def cache_folder(artifacts_dir: str | os.PathLike[str], image_size: int) -> Path:
    return Path(artifacts_dir) / FOLDER / str(image_size)


def entry_name(image_path: str, file_size: int, mtime_ns: int) -> str:
    """``ab/abcdef….jpg``: 256 sub-folders, so no folder holds more than a few thousand files."""
    digest = hashlib.sha256(f"{image_path}\0{file_size}\0{mtime_ns}".encode()).hexdigest()[:32]
    return f"{digest[:2]}/{digest}{ENTRY_SUFFIX}"


def decide(mode: CacheMode, short_sides: Iterable[int], image_size: int) -> tuple[bool, str]:
    """Whether the cache should be built for photos with these short sides, and why."""
    side = cache_side(image_size)
    if mode == "off":
        return False, "image_cache is off"
    if mode == "on":
        return True, "image_cache is on"
    sides = list(short_sides)
    if not sides:
        return False, "no photos in the split tables"
    median = statistics.median(sides)
    if median >= AUTO_MIN_RATIO * side:
        return True, (
            f"median short side {median:g} px ≥ {AUTO_MIN_RATIO:g} × the cache side {side} px"
        )
    return False, (
        f"median short side {median:g} px < {AUTO_MIN_RATIO:g} × the cache side {side} px: "
        "photos decode nearly as fast as cache entries would (image_cache: on builds it anyway)"
    )


@dataclass(frozen=True)
class ImageCache:
    """Reads entries of one cache folder for photos under ``data_dir`` (picklable, so
    DataLoader workers get their own copy)."""

    folder: Path
    data_dir: Path

    def entry_for(self, image_path: str) -> Path | None:
        """The entry the photo ``image_path`` (relative to ``data_dir``) would have as it is on
        disk now; None when the photo cannot be stat'ed."""
        try:
            stat = os.stat(f"{self.data_dir}/{image_path}")
        except OSError:
            return None
        return self.folder / entry_name(image_path, stat.st_size, stat.st_mtime_ns)

    def load(self, image_path: str) -> Image.Image | None:
        """The cached RGB image of the photo, or None (no current entry, or a broken one)."""
        entry = self.entry_for(image_path)
        if entry is None:
            return None
        try:
            with Image.open(entry) as image:
                image.load()
                return to_rgb(image)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, SyntaxError) as error:
            if str(entry) not in _warned:
                _warned.add(str(entry))
                _log.warning(
                    f"Image cache entry {entry} for {image_path} cannot be read ({error}); "
                    "the photo itself is decoded instead (materializing image_cache again "
                    "rewrites an entry that was cut short)."
                )
            return None

    def count_cached(self, image_paths: Iterable[str]) -> tuple[int, int]:
        """(photos with a current entry, photos) among ``image_paths``."""
        cached = total = 0
        for image_path in image_paths:
            total += 1
            entry = self.entry_for(image_path)
            cached += entry is not None and entry.is_file()
        return cached, total


def open_cache(
    artifacts_dir: str | os.PathLike[str] | None,
    data_dir: str | os.PathLike[str],
    image_size: int,
    mode: CacheMode,
) -> ImageCache | None:
    """The cache to read for ``image_size``: None when ``mode`` is off or none was built."""
    if mode == "off" or artifacts_dir is None:
        return None
    folder = cache_folder(artifacts_dir, image_size)
    return ImageCache(folder, Path(data_dir)) if folder.is_dir() else None

"""Read an image's size from its header, without decoding pixels, and spot broken files cheaply."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from imgcls_pipeline.core.errors import describe

EXIF_ORIENTATION = 0x0112
# EXIF orientations 5-8 are rotated by 90°: the displayed width is the stored height.
ROTATED_ORIENTATIONS = frozenset({5, 6, 7, 8})
TAIL_BYTES = 64
# Files up to this size are read in one go; larger ones (camera photos) only head and tail.
WHOLE_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class HeaderInfo:
    status: str  # "ok" or the reason the file cannot be used
    width: int | None = None
    height: int | None = None
    detail: str = ""


def read_header(path: str) -> HeaderInfo:
    """Width and height as displayed (EXIF orientation applied), or why the file is unusable.

    Statuses: ``ok``, ``empty_file``, ``unreadable`` (not an image Pillow knows, or a broken
    header), ``truncated`` (the file stops before the image data ends) and
    ``decompression_bomb`` (more pixels than Pillow's safety limit; nothing is allocated).
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size <= WHOLE_FILE_BYTES:
                # One read() beats Pillow's dozens of small ones, and the tail comes for free.
                data = handle.read()
                return _read_open_file(io.BytesIO(data), len(data), data[-TAIL_BYTES:])
            handle.seek(size - TAIL_BYTES)
            tail = handle.read()
            handle.seek(0)
            return _read_open_file(handle, size, tail)
    except OSError as error:
        return HeaderInfo("unreadable", detail=describe(error))


@contextlib.contextmanager
def quiet_pixel_warnings() -> Iterator[None]:
    """Pillow warns between 1x and 2x its pixel limit; ``read_header`` refuses those itself.
    Use around a loop of ``read_header`` calls (entering it per file would cost a few %)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _read_open_file(handle: BinaryIO, size: int, tail: bytes) -> HeaderInfo:
    if size == 0:
        return HeaderInfo("empty_file", detail="0 bytes")
    try:
        with Image.open(handle) as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                return HeaderInfo("unreadable", detail=f"image size {width}x{height}")
            if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
                return HeaderInfo("decompression_bomb", width, height, _bomb(width, height))
            if not _ends_where_expected(image, tail, size, handle):
                return HeaderInfo("truncated", width, height, "image data ends early")
            if _orientation(image) in ROTATED_ORIENTATIONS:
                width, height = height, width
            return HeaderInfo("ok", width, height)
    except Image.DecompressionBombError as error:
        return HeaderInfo("decompression_bomb", detail=str(error))
    except UnidentifiedImageError:
        return HeaderInfo("unreadable", detail="not an image file Pillow can identify")
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as error:
        return HeaderInfo("unreadable", detail=describe(error))


def _bomb(width: int, height: int) -> str:
    return (
        f"{width}x{height} = {width * height:,} pixels, above Pillow's {Image.MAX_IMAGE_PIXELS:,}"
    )


def _orientation(image: Image.Image) -> int | None:
    # Image.getexif() on a PNG decodes the whole image to look for a late eXIf chunk; the EXIF
    # bytes that the header already gave us (JPEG APP1, WebP EXIF, early PNG eXIf) are enough.
    raw = image.info.get("exif")
    if not raw:
        return None
    exif = Image.Exif()
    try:
        exif.load(raw)
    except (SyntaxError, ValueError, struct.error, OSError):
        return None
    return exif.get(EXIF_ORIENTATION)


def _ends_where_expected(image: Image.Image, tail: bytes, size: int, handle: BinaryIO) -> bool:
    """Cheap end-of-file check per format; when in doubt, decode to be sure."""
    kind = image.format
    if kind in ("JPEG", "MPO") and b"\xff\xd9" in tail:  # MPO: a camera's multi-picture JPEG
        return True
    if kind == "PNG" and b"IEND" in tail:
        return True
    if kind == "WEBP":
        handle.seek(4)
        (riff_size,) = struct.unpack("<I", handle.read(4))
        return size >= riff_size + 8
    if kind == "BMP":
        return _bmp_complete(image, size)
    return _decodes(image)


def _bmp_complete(image: Image.Image, size: int) -> bool:
    tile = image.tile[0] if image.tile else None
    if tile is None or tile[0] != "raw":
        return _decodes(image)
    bits = {"1": 1, "L": 8, "P": 8, "RGB": 24, "RGBA": 32}.get(image.mode, 32)
    stride = ((image.width * bits + 31) // 32) * 4
    return size >= tile[2] + stride * image.height


def _decodes(image: Image.Image) -> bool:
    """Full decode (reduced via ``draft`` for JPEG) for the rare file whose ending looks odd."""
    try:
        if image.format in ("JPEG", "MPO"):
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()
    except (OSError, SyntaxError, ValueError, struct.error, EOFError):
        return False
    return True

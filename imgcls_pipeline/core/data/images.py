"""Opening photos: any file Pillow reads → 8-bit RGB, upright per EXIF, cheaply downscaled.

Pillow only (no torch), so the report's thumbnails use the same opener as training and search.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from imgcls_pipeline.core.errors import UserError, describe

_WITH_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")
_HIGH_BIT_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
# Modes whose pixels Image.reduce may average as they are (alpha modes are premultiplied by
# Pillow itself); palette indices, 1-bit and I;16 must become RGB first.
_REDUCIBLE = frozenset({"RGB", "L", "LA", "La", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "F"})

_BAND_ROWS = 256
_log = logging.getLogger(__name__)
_warned_large: set[str] = set()  # one line per file per process, not one per epoch


class UnreadableImage(UserError):
    """A photo that cannot be decoded (missing, broken, too many pixels); training skips it."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(
            f"Cannot read image {path} ({reason}); replace or delete the file and rebuild the "
            "manifest."
        )
        self.path = str(path)
        self.reason = reason


def load_rgb(path: str | Path, target_size: int | None = None) -> Image.Image:
    """Open an image as 8-bit RGB, upright per its EXIF orientation.

    With ``target_size``, a JPEG is decoded at the largest 1/8..1/1 scale that keeps both sides at
    least ``target_size`` (libjpeg's DCT scaling, far cheaper than decoding a 12 MP photo in full),
    and any image whose shorter side is still 2× larger is box-reduced towards ``target_size``
    before any copy is made (rotation, RGB conversion), so a huge PNG costs one decoded image in
    memory, not several. The transforms do the final resize.

    Pillow's decompression-bomb limits (``Image.MAX_IMAGE_PIXELS``, 89,478,485 pixels): above it
    the photo is still decoded, with one warning line naming the file; above twice it the photo
    is refused (``UnreadableImage``) without allocating anything.
    """
    try:
        # Decoded in a function of its own, so the full-size image is freed before to_rgb copies.
        image = _decode_upright(path, target_size)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise UnreadableImage(path, describe(err)) from None
    return to_rgb(image)


def _decode_upright(path: str | Path, target_size: int | None) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow's own warning is a raw multi-line message; ours names the file once.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as opened:
            _warn_if_large(path, opened)
            if target_size:
                opened.draft("RGB", (target_size, target_size))
            opened.load()
            image = _reduced(opened, target_size) if target_size else opened
            # A loaded copy, so the file can close; a no-op rotation copies the small image.
            return ImageOps.exif_transpose(image)


def _reduced(image: Image.Image, target_size: int) -> Image.Image:
    if image.mode not in _REDUCIBLE:
        image = to_rgb(image)
    factor = min(image.size) // target_size
    if factor < 2:
        return image
    if image.mode in ("LA", "RGBA"):
        return _reduce_in_bands(image, factor)
    return image.reduce(factor)


def _reduce_in_bands(image: Image.Image, factor: int) -> Image.Image:
    """``image.reduce(factor)`` for modes Pillow premultiplies first: that conversion copies the
    whole image (+676 MiB for a 13,000² RGBA PNG); band by band it copies a few rows at a time.
    Bands are whole multiples of ``factor`` rows, so every box is the same as in one pass."""
    width, height = image.size
    reduced = Image.new(image.mode, (-(-width // factor), -(-height // factor)))
    rows = factor * max(1, _BAND_ROWS // factor)
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(top + rows, height))).reduce(factor)
        reduced.paste(band, (0, top // factor))
    reduced.info = image.info.copy()  # EXIF orientation is applied afterwards
    return reduced


def _warn_if_large(path: str | Path, image: Image.Image) -> None:
    width, height = image.size
    limit = Image.MAX_IMAGE_PIXELS
    if not limit or width * height <= limit or str(path) in _warned_large:
        return
    _warned_large.add(str(path))
    _log.warning(
        f"{path} is {width}x{height} = {width * height:,} pixels, above Pillow's "
        f"decompression-bomb warning limit of {limit:,}; decoding it anyway, at reduced size "
        f"where the format allows (over {2 * limit:,} pixels it would be refused)."
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: alpha is composited over white, 16/32-bit values scaled to 8-bit."""
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_DEPTH:
        return _high_bit_depth_to_rgb(image)
    if image.mode in _WITH_ALPHA or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float64)
    # 'I;16*' is 16-bit by definition. 'I' and 'F' carry no bit depth: 16-bit PNGs and TIFFs open
    # as 'I' with values up to 65535, so values above 255 are read as 16-bit and anything else as
    # already 8-bit.
    if image.mode.startswith("I;16") or values.max(initial=0) > 255:
        values = values / 257.0
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")

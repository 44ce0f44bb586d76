"""Opening photos: any file Pillow reads → 8-bit RGB, upright per EXIF, cheaply downscaled.

Pillow only (no torch), so the report's thumbnails use the same opener as training and search.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from imgcls_pipeline.core.errors import UserError, describe

_WITH_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")
_HIGH_BIT_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def load_rgb(path: str | Path, target_size: int | None = None) -> Image.Image:
    """Open an image as 8-bit RGB, upright per its EXIF orientation.

    With ``target_size``, a JPEG is decoded at the largest 1/8..1/1 scale that keeps both sides at
    least ``target_size`` (libjpeg's DCT scaling, far cheaper than decoding a 12 MP photo in full),
    and any image whose shorter side is still 2× larger is box-reduced towards ``target_size``.
    The transforms do the final resize.
    """
    try:
        with Image.open(path) as image:
            if target_size:
                image.draft("RGB", (target_size, target_size))
            image = ImageOps.exif_transpose(image)  # returns a loaded copy
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(
            f"Cannot read image {path} ({describe(err)}); replace or delete the file and rebuild "
            "the manifest."
        ) from None
    image = to_rgb(image)
    if target_size:
        factor = min(image.size) // target_size
        if factor >= 2:
            image = image.reduce(factor)
    return image


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

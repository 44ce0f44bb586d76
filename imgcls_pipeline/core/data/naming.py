"""The photo naming rule: ``data/<class>/<ID>_<sequence>.<ext>``."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})


@dataclass(frozen=True)
class ParsedName:
    object_id: str
    sequence: int


def normalize_label(text: str) -> str:
    """NFC form, so a Korean folder name written by macOS (NFD) equals the same name typed (NFC)."""
    return unicodedata.normalize("NFC", text)


def parse_image_name(file_name: str) -> ParsedName | None:
    """Split ``plant_001_3.jpg`` into ID ``plant_001`` and sequence 3; None if it breaks the rule.

    The ID may itself contain ``_``, so the split is on the last one; the sequence is an integer.
    """
    stem = file_name.rpartition(".")[0] or file_name
    object_id, sep, sequence = stem.rpartition("_")
    if not sep or not object_id.strip() or not sequence.isdecimal() or not sequence.isascii():
        return None
    return ParsedName(object_id=normalize_label(object_id), sequence=int(sequence))


def is_image_extension(file_name: str) -> bool:
    # Plain string work: this runs once per file of folders with millions of photos.
    stem, dot, extension = file_name.rpartition(".")
    return bool(dot and stem) and f".{extension.lower()}" in IMAGE_EXTENSIONS

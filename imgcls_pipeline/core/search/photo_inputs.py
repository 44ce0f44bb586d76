"""The photos ``imgcls predict`` is given: files as named, folders searched recursively."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imgcls_pipeline.core.data.naming import is_image_extension


@dataclass
class PhotoInputs:
    photos: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # files in folders that are not photos


def find_photos(inputs: list[str]) -> PhotoInputs:
    """Files as given (a named file is always tried, so a bad one gets its own error line);
    folders expanded to the photos inside them by extension, sorted; their other files (hidden
    ones aside) are listed as skipped."""
    found = PhotoInputs()
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            found.photos.append(path)
            continue
        for p in sorted(path.rglob("*")):
            if not p.is_file() or p.name.startswith("."):
                continue
            (found.photos if is_image_extension(p.name) else found.skipped).append(p)
    return found

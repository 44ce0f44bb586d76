"""Tiny photo folders for tests, made in tmp_path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_COLOURS = [(200, 40, 40), (40, 160, 40), (40, 40, 200), (200, 200, 40), (160, 40, 160)]


def write_photo(
    path: Path,
    size: tuple[int, int] = (96, 80),
    colour=(128, 128, 128),
    seed: int = 0,
    fmt: str | None = None,
) -> Path:
    """A small noisy photo of one dominant colour, so classes are learnable."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = np.clip(
        np.array(colour, dtype=np.int16) + rng.integers(-40, 40, (height, width, 3)), 0, 255
    ).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def make_photo_folder(
    root: Path,
    layout: Mapping[str, Mapping[str, int]],
    size: tuple[int, int] = (96, 80),
    ext: str = ".jpg",
) -> Path:
    """``layout`` = {class: {object_id: number of photos}} → root/class/ID_seq.ext files."""
    for class_index, (class_name, ids) in enumerate(layout.items()):
        colour = CLASS_COLOURS[class_index % len(CLASS_COLOURS)]
        for id_index, (object_id, count) in enumerate(ids.items()):
            for sequence in range(1, count + 1):
                seed = hash((class_index, id_index, sequence)) % 2**32
                write_photo(root / class_name / f"{object_id}_{sequence}{ext}", size, colour, seed)
    return root


def uniform_layout(n_classes: int, ids_per_class: int, photos_per_id: int) -> dict:
    return {
        f"class_{c}": {f"c{c}id{i:03d}": photos_per_id for i in range(ids_per_class)}
        for c in range(n_classes)
    }

"""A small built-in example in the specification's layout: photos of toy objects by shape.

Each class is a shape (circle, square, triangle, star) in its own family of colours. Each ID is
one physical object — a shape with its own shade and size — photographed several times at a
different position, angle, lighting and background. The example is meant to be learnable in a
minute by a tiny model trained from scratch on a CPU, so shape and colour family both tell the
class; it shows the pipeline working, not how hard a real data set is.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle", "star")
# Per class: a family of shades (reds, greens, blues, yellows); each object picks one.
PALETTES = {
    "circle": [(220, 50, 50), (190, 40, 80), (240, 90, 70)],
    "square": [(50, 160, 60), (90, 180, 50), (40, 130, 90)],
    "triangle": [(50, 80, 210), (70, 120, 230), (60, 50, 170)],
    "star": [(230, 180, 40), (240, 200, 70), (210, 150, 30)],
}


def _polygon(shape: str, radius: float) -> list[tuple[float, float]]:
    if shape == "square":
        corners = [45, 135, 225, 315]
        return [
            (radius * math.cos(math.radians(a)), radius * math.sin(math.radians(a)))
            for a in corners
        ]
    if shape == "triangle":
        return [
            (radius * math.cos(math.radians(a)), radius * math.sin(math.radians(a)))
            for a in (-90, 30, 150)
        ]
    points = []
    for i in range(10):  # star: alternate outer and inner radius
        r = radius if i % 2 == 0 else radius * 0.45
        a = math.radians(-90 + 36 * i)
        points.append((r * math.cos(a), r * math.sin(a)))
    return points


def draw_photo(
    shape: str, colour: tuple[int, int, int], scale: float, size: int, rng: np.random.Generator
) -> Image.Image:
    """One photo of one object: random background, position, rotation, lighting, blur."""
    background = tuple(int(v) for v in rng.integers(170, 256, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    radius = size * scale * rng.uniform(0.9, 1.1)
    cx, cy = (size / 2 + rng.uniform(-0.15, 0.15) * size for _ in range(2))
    angle = rng.uniform(0, 2 * math.pi)
    light = rng.uniform(0.75, 1.15)
    fill = tuple(int(min(255, c * light)) for c in colour)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    else:
        rotated = [
            (
                cx + x * math.cos(angle) - y * math.sin(angle),
                cy + x * math.sin(angle) + y * math.cos(angle),
            )
            for x, y in _polygon(shape, radius)
        ]
        draw.polygon(rotated, fill=fill)
    noise = rng.normal(0, 8, (size, size, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))


def make_example_dataset(
    root: str | os.PathLike[str],
    *,
    ids_per_class: int = 10,
    photos_per_id: int = 4,
    size: int = 96,
    seed: int = 0,
) -> Path:
    """Write ``root/<shape>/<shape>NN_<k>.jpg``; returns ``root``. Existing files are replaced."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for shape in CLASSES:
        for number in range(1, ids_per_class + 1):
            palette = PALETTES[shape]
            colour = palette[int(rng.integers(len(palette)))]
            scale = float(rng.uniform(0.22, 0.34))
            for sequence in range(1, photos_per_id + 1):
                path = root / shape / f"{shape}{number:02d}_{sequence}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                draw_photo(shape, colour, scale, size, rng).save(path, quality=90)
    return root

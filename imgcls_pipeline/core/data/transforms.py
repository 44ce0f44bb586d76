"""Image transforms: training augmentations and the evaluation resize, then normalisation."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from imgcls_pipeline.core.settings import AugmentationConfig


def _interpolation(name: str) -> v2.InterpolationMode:
    try:
        return v2.InterpolationMode(name)
    except ValueError:
        return v2.InterpolationMode.BILINEAR  # a timm config naming a mode torchvision lacks


def train_transform(
    aug: AugmentationConfig,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bilinear",
) -> v2.Compose:
    """Augmentations of the specification's AugmentationConfig, then the model's normalisation."""
    # The augmentations run on the Pillow image, before it becomes a tensor: Pillow's C code does
    # the same rotation, crop and colour jitter about twice as fast as torchvision's tensor ops,
    # and the hue jitter is one colour-matrix conversion (``HueRotation``) instead of an
    # RGB→HSV→RGB round trip; on a large GPU the data loader is the limit
    # (benchmarks/bench_data_path.py: 17 → about 60 training images/s per core).
    return v2.Compose(
        [
            # Rotate before cropping so the crop cuts away most of the corners the rotation fills.
            v2.RandomRotation(aug.rotation_degrees),
            v2.RandomResizedCrop(
                image_size,
                scale=(aug.crop_scale_min, 1.0),
                interpolation=_interpolation(interpolation),
                antialias=True,
            ),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(aug.brightness, aug.contrast, aug.saturation),
            HueRotation(aug.hue),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def eval_transform(
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bilinear",
) -> v2.Compose:
    """Resize the whole image to image_size × image_size (nothing cropped away) and normalise."""
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(
                (image_size, image_size),
                interpolation=_interpolation(interpolation),
                antialias=True,
            ),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


# RGB ↔ YIQ (NTSC): Y is the luma, I and Q the chroma plane in which a rotation turns the hue.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def hue_matrix(shift: float) -> tuple[float, ...]:
    """Pillow's 12-number RGB→RGB matrix that turns the hue by ``shift`` of a full turn
    (torchvision's hue factor: 0.05 = 18°) and keeps the luma."""
    angle = -2 * math.pi * shift  # the sign that turns red toward yellow for a positive shift
    cos, sin = math.cos(angle), math.sin(angle)
    turn = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    matrix = _YIQ_TO_RGB @ turn @ _RGB_TO_YIQ
    return tuple(float(value) for row in matrix for value in (*row, 0.0))


class HueRotation:
    """Hue jitter by a uniform shift in [-max_shift, max_shift], as a rotation of the YIQ chroma
    plane (the way NVIDIA DALI does hue): one matrix conversion in Pillow's C code, about ten
    times faster than ColorJitter's RGB→HSV→RGB round trip at 480 px."""

    def __init__(self, max_shift: float) -> None:
        self.max_shift = max_shift

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.max_shift == 0:
            return image
        shift = (torch.rand(()).item() * 2 - 1) * self.max_shift  # torch's RNG: seeded per worker
        return image.convert("RGB", hue_matrix(shift))

    def __repr__(self) -> str:
        return f"HueRotation(max_shift={self.max_shift})"

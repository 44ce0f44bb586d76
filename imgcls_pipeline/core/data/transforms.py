"""Tensor transforms: training augmentations and the evaluation resize, then normalisation."""

from __future__ import annotations

import torch
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
    return v2.Compose(
        [
            v2.PILToTensor(),
            # Rotate before cropping so the crop cuts away most of the corners the rotation fills.
            v2.RandomRotation(aug.rotation_degrees),
            v2.RandomResizedCrop(
                image_size,
                scale=(aug.crop_scale_min, 1.0),
                interpolation=_interpolation(interpolation),
                antialias=True,
            ),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue),
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

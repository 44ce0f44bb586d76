"""Embeddings of cached photos match those of the photos decoded directly.

Measured here (test_efficientnet, random weights with BatchNorm statistics of these photos,
128 px, 6 photos of 640×480 to 1600×1200, one EXIF-rotated): cosine 0.9974–0.9988 per photo
between cached and direct embeddings, against 0.30–0.80 between different photos. The test
requires ≥ 0.99, and the gap to its own direct embedding under a tenth of the gap to any other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from imgcls_pipeline.core.data.dataset import ImageDataset
from imgcls_pipeline.core.data.image_cache import ImageCache
from imgcls_pipeline.core.data.image_cache_build import build_cache
from imgcls_pipeline.core.search.inference import LoadedModel, embed_frame
from imgcls_pipeline.core.settings import ModelConfig
from imgcls_pipeline.core.training.model import build_embedding_model
from imgcls_pipeline_tests.core.data.test_image_cache import scene

SIZE = 128
MIN_COSINE = 0.99


def test_cached_photos_embed_as_the_photos_themselves(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sizes = [(640, 480), (480, 640), (800, 600), (1600, 1200), (1024, 768), (700, 700)]
    names = [f"c/id{i}_1.jpg" for i in range(len(sizes))]
    exif = {"exif": _rotated()}
    for seed, (name, size) in enumerate(zip(names, sizes, strict=True)):
        scene(data / name, seed, size=size, **(exif if seed == 3 else {}))
    folder = tmp_path / "cache"
    assert build_cache(folder, data, names, SIZE).entries == len(names)

    frame = pd.DataFrame({"image_path": names, "class_name": "c", "object_id": names})
    loaded = _discriminating_model(frame, data)
    direct = embed_frame(loaded, frame, data)
    cached = embed_frame(loaded, frame, data, image_cache=ImageCache(folder, data))

    similarity = cached @ direct.T  # unit rows
    own = np.diag(similarity)
    others = similarity[~np.eye(len(names), dtype=bool)]
    print(
        f"own cosine {own.min():.4f}–{own.max():.4f}; others {others.min():.2f}–{others.max():.2f}"
    )
    assert own.min() >= MIN_COSINE
    assert (1 - own.min()) < 0.1 * (1 - others.max())


def _discriminating_model(frame: pd.DataFrame, data: Path) -> LoadedModel:
    """A random-weight model whose BatchNorm statistics are those of these photos: with the
    default statistics (0 and 1) every photo gets nearly the same embedding, so no difference
    between two decodings could show."""
    torch.manual_seed(0)
    model = build_embedding_model(
        ModelConfig(backbone="test_efficientnet", pretrained=False, embedding_dim=64)
    )
    loaded = LoadedModel(model, SIZE, torch.device("cpu"), checkpoint={})
    dataset = ImageDataset(frame, data, [], loaded.transform(), SIZE)
    for layer in model.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.reset_running_stats()
            layer.momentum = None  # a plain average over the calibration pass
    with torch.no_grad():
        model.train()(torch.stack([image for image, _, _ in dataset]))
    model.eval()
    return loaded


def _rotated() -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 8  # shown rotated 90° counter-clockwise
    return exif.tobytes()

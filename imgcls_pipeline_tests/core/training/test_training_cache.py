"""Training reads its photos from the image cache when one was built for its image size."""

from __future__ import annotations

import pandas as pd

from imgcls_pipeline.core.data.image_cache import ImageCache, cache_folder
from imgcls_pipeline.core.data.image_cache_build import build_cache
from imgcls_pipeline.core.training import loop
from imgcls_pipeline_tests.core.training.tiny_training import (
    cpu_hardware,
    make_tiny_splits,
    tiny_config,
)


def test_training_reads_train_and_val_photos_from_the_cache(tmp_path, monkeypatch) -> None:
    data_dir, splits_dir = make_tiny_splits(tmp_path)
    photos = pd.concat([pd.read_csv(splits_dir / f"{s}.csv") for s in ("train", "val")])
    artifacts = tmp_path / "artifacts"
    build_cache(cache_folder(artifacts, 64), data_dir, photos["image_path"].tolist(), 64)
    served: list[str] = []
    real_load = ImageCache.load

    def spy(self: ImageCache, image_path: str):
        image = real_load(self, image_path)
        served.append(image_path if image is not None else "")
        return image

    monkeypatch.setattr(ImageCache, "load", spy)
    lines: list[str] = []
    result = loop.train(
        tiny_config(total_epochs=1),
        data_dir=data_dir,
        splits_dir=splits_dir,
        checkpoint_dir=tmp_path / "ckpt",
        hardware=cpu_hardware(),
        artifacts_dir=artifacts,
        log=lines.append,
    )
    assert result.last_epoch == 1
    assert f"Image cache {artifacts / 'image_cache' / '64'}: 18 of 18 photos read from it." in lines
    assert served and "" not in served  # every read was a hit
    assert set(served) == set(photos["image_path"])  # training batches and validation

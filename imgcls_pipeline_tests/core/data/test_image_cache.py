"""The decode-once image cache: what it stores, when it is rebuilt, and that readers never fail."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from imgcls_pipeline.core.data import image_cache_build
from imgcls_pipeline.core.data.dataset import ImageDataset, make_loader
from imgcls_pipeline.core.data.image_cache import (
    ImageCache,
    cache_folder,
    cache_side,
    decide,
    entry_name,
    open_cache,
)
from imgcls_pipeline.core.data.image_cache_build import build_cache
from imgcls_pipeline.core.data.images import load_rgb
from imgcls_pipeline.core.data.transforms import eval_transform

SIZE = 128  # cache side 147


def scene(path: Path, seed: int, size: tuple[int, int] = (640, 480), **save: object) -> Path:
    """A photo with structure at every scale (gradients, blobs, fine noise), unlike its siblings."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    ramp = (x * np.cos(angle) + y * np.sin(angle)) / (width + height)
    base = np.stack([ramp * rng.uniform(80, 250) for _ in range(3)], axis=-1)
    coarse = rng.normal(0, 60, (height // 32 + 1, width // 32 + 1, 3))
    blobs = Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize(
        size, Image.Resampling.BICUBIC
    )
    pixels = 0.5 * base + 0.5 * np.asarray(blobs, np.float32) + rng.normal(0, 8, base.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90, **save)
    return path


def photo_folder(root: Path, count: int) -> list[str]:
    names = [f"c{i % 2}/id{i:02d}_1.jpg" for i in range(count)]
    for seed, name in enumerate(names):
        scene(root / name, seed)
    return names


def test_auto_builds_only_when_photos_are_at_least_twice_the_cache_side() -> None:
    side = cache_side(480)
    assert side == 552
    assert decide("auto", [3000, 3000, 2268], 480)[0]  # 12 MP phone photos
    assert decide("auto", [2 * side, 2 * side, 100], 480)[0]  # the median decides
    built, reason = decide("auto", [2 * side - 1] * 3, 480)
    assert not built and "image_cache: on builds it anyway" in reason
    assert decide("on", [96], 64)[0]
    assert not decide("off", [4000], 480)[0]
    assert not decide("auto", [], 480)[0]


def test_an_entry_is_the_upright_photo_shrunk_to_the_cache_side(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise: portrait
    source = scene(tmp_path / "data/c/id_1.jpg", 1, exif=exif.tobytes())
    small = scene(tmp_path / "data/c/id_2.jpg", 2, size=(120, 100))
    folder = tmp_path / "cache"
    report = build_cache(folder, tmp_path / "data", ["c/id_1.jpg", "c/id_2.jpg"], SIZE)
    assert (report.entries, report.new, report.hit_rate) == (2, 2, 1.0)

    cache = ImageCache(folder, tmp_path / "data")
    cached = cache.load("c/id_1.jpg")
    assert cached.mode == "RGB" and cached.size == (147, 196)  # portrait, short side 147
    direct = load_rgb(source, SIZE).resize(cached.size, Image.Resampling.LANCZOS)
    error = np.abs(np.asarray(cached, np.float32) - np.asarray(direct, np.float32)).mean()
    assert error < 1.5  # the JPEG q98 4:4:4 round trip, out of 255
    assert cache.load("c/id_2.jpg").size == Image.open(small).size  # never enlarged


def test_a_rebuild_decodes_only_new_and_changed_photos_and_prunes_vanished_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, folder = tmp_path / "data", tmp_path / "cache"
    names = photo_folder(data, 4)
    decoded: list[str] = []
    real_decode = image_cache_build.decode_for_cache

    def counting_decode(source: str, side: int) -> Image.Image:
        decoded.append(Path(source).name)
        return real_decode(source, side)

    monkeypatch.setattr(image_cache_build, "decode_for_cache", counting_decode)
    first = build_cache(folder, data, names, SIZE)
    assert (first.new, first.reused, first.pruned) == (4, 0, 0)
    kept_entry = folder / _entry(data, names[0])
    kept_written = kept_entry.stat().st_mtime_ns

    decoded.clear()
    again = build_cache(folder, data, names, SIZE)
    assert (again.new, again.reused, again.pruned, decoded) == (0, 4, 0, [])
    assert again.version == first.version

    scene(data / names[1], seed=99)  # changed
    os.utime(data / names[1], ns=(1, 10**18))
    (data / names[2]).unlink()  # vanished (still listed: not cached, decoded when used)
    scene(data / "c0/new_1.jpg", seed=7)  # added
    later = build_cache(folder, data, [*names, "c0/new_1.jpg"], SIZE)
    assert sorted(decoded) == ["id01_1.jpg", "new_1.jpg"]
    assert (later.new, later.reused, later.pruned, later.entries) == (2, 2, 2, 4)
    assert list(later.failed) == [names[2]] and later.version != first.version
    assert kept_entry.stat().st_mtime_ns == kept_written  # an unchanged photo's entry is untouched
    assert len(list(folder.glob("*/*.jpg"))) == 4


def test_a_broken_entry_falls_back_to_the_photo_and_is_rewritten(tmp_path: Path) -> None:
    data, folder = tmp_path / "data", tmp_path / "cache"
    names = photo_folder(data, 2)
    build_cache(folder, data, names, SIZE)
    frame = pd.DataFrame({"image_path": names, "class_name": "c", "object_id": ["a", "b"]})
    transform = eval_transform(SIZE, (0.5,) * 3, (0.5,) * 3)
    cache = ImageCache(folder, data)
    with_cache = ImageDataset(frame, data, ["c"], transform, SIZE, image_cache=cache)
    direct = ImageDataset(frame, data, ["c"], transform, SIZE)
    assert not torch.equal(with_cache[0][0], direct[0][0])  # read from the cache

    entry = folder / _entry(data, names[0])
    entry.write_bytes(entry.read_bytes()[:500])  # cut short, as by a crash before it reached disk
    tensor, label, note = with_cache[0]
    assert torch.equal(tensor, direct[0][0]) and (label, note) == (0, "")
    (folder / _entry(data, names[1])).unlink()
    assert torch.equal(with_cache[1][0], direct[1][0])

    report = build_cache(folder, data, names, SIZE)
    assert (report.new, report.reused) == (2, 0)
    assert not torch.equal(with_cache[0][0], direct[0][0])


def test_loader_workers_read_the_cache_as_the_main_process_does(tmp_path: Path) -> None:
    data = tmp_path / "data"
    names = photo_folder(data, 4)
    folder = cache_folder(tmp_path / "artifacts", SIZE)
    build_cache(folder, data, names, SIZE)
    cache = open_cache(tmp_path / "artifacts", data, SIZE, "auto")
    assert cache is not None and cache.count_cached(names) == (4, 4)
    assert open_cache(tmp_path / "artifacts", data, SIZE, "off") is None
    assert open_cache(tmp_path / "artifacts", data, 2 * SIZE, "on") is None  # none of that size
    frame = pd.DataFrame({"image_path": names, "class_name": "c", "object_id": list("abcd")})
    dataset = ImageDataset(
        frame, data, ["c"], eval_transform(SIZE, (0.5,) * 3, (0.5,) * 3), SIZE, image_cache=cache
    )
    in_process = next(iter(make_loader(dataset, num_workers=0, pin_memory=False, batch_size=4)))
    workers = next(iter(make_loader(dataset, num_workers=2, pin_memory=False, batch_size=2)))
    assert torch.equal(in_process[0][:2], workers[0])


def _entry(data: Path, image_path: str) -> str:
    stat = (data / image_path).stat()
    return entry_name(image_path, stat.st_size, stat.st_mtime_ns)


def test_an_interrupted_build_stops_soon_and_keeps_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, folder = tmp_path / "data", tmp_path / "cache"
    names = photo_folder(data, 8)
    real_decode = image_cache_build.decode_for_cache
    calls: list[str] = []

    def interrupted_at_the_second(source: str, side: int) -> Image.Image:
        calls.append(source)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C, or the run terminated from the UI
        return real_decode(source, side)

    monkeypatch.setattr(image_cache_build, "decode_for_cache", interrupted_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        build_cache(folder, data, names, SIZE, threads=1)
    assert len(calls) < len(names)  # the queued photos were dropped, not decoded
    written = len(list(folder.glob("*/*.jpg")))
    assert written >= 1
    monkeypatch.setattr(image_cache_build, "decode_for_cache", real_decode)
    report = build_cache(folder, data, names, SIZE)
    assert (report.reused, report.new) == (written, len(names) - written)

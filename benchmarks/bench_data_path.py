"""Images per second per CPU core from 12-megapixel JPEGs to 480 px tensors: naive Pillow, today's
opener (``load_rgb``, JPEG draft + box reduction) and the decode-once image cache.

    uv run python benchmarks/bench_data_path.py [--photos 32] [--size 480] [--rounds 2]
        [--folder /tmp/imgcls_bench_data_path] [--json bench_data_path.json]

Each path runs in this one process with one thread (``torch.set_num_threads(1)``), and its rate
is photos divided by the CPU seconds the process used: images per second per core, unaffected by
other programs sharing the machine (the wall-clock rate is shown beside it). Three stages per
path: ``decode`` (to the Pillow image the transforms receive), ``+ train`` (the training
augmentations and normalisation of ``transforms.train_transform``) and ``+ eval`` (the evaluation
resize of ``transforms.eval_transform``, as embedding does). ``transform only`` is the training
transform on an image already in memory: the ceiling of any decoder; two variants of it show
where its time goes. Goal: ≥ 60 images/s per
core from the cache (decode stage).

The photos are made once (4000 × 3000, smooth gradients, blobs and sensor-like noise, one in four
with an EXIF rotation) and reused from ``--folder``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2

from imgcls_pipeline.core.data.image_cache import ImageCache, cache_folder, cache_side
from imgcls_pipeline.core.data.image_cache_build import JPEG_OPTIONS, build_cache
from imgcls_pipeline.core.data.images import load_rgb
from imgcls_pipeline.core.data.transforms import HueRotation, eval_transform, train_transform
from imgcls_pipeline.core.settings import AugmentationConfig

WIDTH, HEIGHT = 4000, 3000
MEAN = STD = (0.5, 0.5, 0.5)


def make_photo(path: Path, seed: int) -> None:
    """A 12 MP JPEG (quality 92, as phones save) with content at every scale."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    ramp = (x * np.cos(angle) + y * np.sin(angle)) / (WIDTH + HEIGHT)
    base = np.stack([ramp * rng.uniform(80, 250) for _ in range(3)], axis=-1)
    coarse = rng.normal(0, 50, (HEIGHT // 40, WIDTH // 40, 3))
    blobs = Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize(
        (WIDTH, HEIGHT), Image.Resampling.BICUBIC
    )
    pixels = 0.5 * base + 0.5 * np.asarray(blobs, np.float32)
    pixels += rng.normal(0, 4, pixels.shape).astype(np.float32)
    exif = Image.Exif()
    if seed % 4 == 0:
        exif[0x0112] = 6  # portrait shot: stored landscape, shown rotated
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image.save(path, quality=92, exif=exif.tobytes())


def naive_decode(path: Path, size: int) -> Image.Image:
    """Full-size decode, upright, short side resized to ``size``: what a plain loader does."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened.convert("RGB"))
    width, height = image.size
    scale = size / min(width, height)
    return image.resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR)


def tensor_ops_transform(aug: AugmentationConfig, size: int) -> v2.Compose:
    """``train_transform`` as it was: the tensor conversion first, every augmentation on the
    tensor (torchvision's tensor kernels instead of Pillow's)."""
    steps = list(train_transform(aug, size, MEAN, STD).transforms)
    to_tensor = next(step for step in steps if isinstance(step, v2.PILToTensor))
    jitter = v2.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue)
    augmentations = [
        jitter if isinstance(step, v2.ColorJitter) else step
        for step in steps
        if step is not to_tensor and not isinstance(step, HueRotation)
    ]
    return v2.Compose([to_tensor, *augmentations])


def rates(run: Callable[[Path], object], paths: list[Path], rounds: int) -> dict[str, float]:
    """Best of ``rounds`` passes: photos per CPU second and per wall second."""
    run(paths[0])  # first-call costs (imports, allocator) out of the timing
    best = {"per_cpu_s": 0.0, "per_wall_s": 0.0}
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        for path in paths:
            run(path)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        best["per_cpu_s"] = max(best["per_cpu_s"], len(paths) / cpu)
        best["per_wall_s"] = max(best["per_wall_s"], len(paths) / wall)
    return {key: round(value, 1) for key, value in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/imgcls_bench_data_path"))
    parser.add_argument("--json", type=Path, default=Path("bench_data_path.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = args.folder / "data"
    names = [f"photos/p{index:03d}_1.jpg" for index in range(args.photos)]
    for index, name in enumerate(names):
        if not (data / name).is_file():
            make_photo(data / name, index)
    paths = [data / name for name in names]
    source_mb = sum(path.stat().st_size for path in paths) / len(paths) / 1e6

    folder = cache_folder(args.folder / "artifacts", args.size)
    if folder.exists():  # a build from scratch every time, so its rate is measured
        for entry in folder.glob("*/*.jpg"):
            entry.unlink()
    cpu, wall = time.process_time(), time.perf_counter()
    report = build_cache(folder, data, names, args.size)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    cache = ImageCache(folder, data)
    by_path = dict(zip(paths, names, strict=True))

    train = train_transform(AugmentationConfig(), args.size, MEAN, STD)
    evaluate = eval_transform(args.size, MEAN, STD)
    openers: dict[str, Callable[[Path], Image.Image]] = {
        "naive Pillow": lambda path: naive_decode(path, args.size),
        "today (load_rgb)": lambda path: load_rgb(path, args.size),
        "image cache": lambda path: cache.load(by_path[path]),
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    for label, opener in openers.items():
        results[label] = {
            "decode": rates(opener, paths, args.rounds),
            "+ train": rates(lambda path, o=opener: train(o(path)), paths, args.rounds),
            "+ eval": rates(lambda path, o=opener: evaluate(o(path)), paths, args.rounds),
        }
    in_memory = cache.load(names[0])
    ceiling = rates(lambda _: train(in_memory), paths, args.rounds)
    # Where the training transform's time goes: the same augmentations on the tensor (before they
    # moved onto the Pillow image; hue still as ColorJitter's RGB→HSV→RGB round trip), and
    # without any hue jitter.
    variants = {
        "augmentations on the tensor": tensor_ops_transform(AugmentationConfig(), args.size),
        "no hue jitter": train_transform(AugmentationConfig(hue=0.0), args.size, MEAN, STD),
    }
    variant_rates = {
        label: rates(lambda _, t=transform: t(in_memory), paths, args.rounds)
        for label, transform in variants.items()
    }

    print(f"{args.photos} photos {WIDTH}×{HEIGHT}, {source_mb:.1f} MB each; size {args.size}")
    print(f"{'images/s per core (wall)':28}{'decode':>18}{'+ train':>18}{'+ eval':>18}")
    for label, stages in results.items():
        cells = "".join(
            f"{stage['per_cpu_s']:>10.1f} ({stage['per_wall_s']:>5.1f})"
            for stage in stages.values()
        )
        print(f"{label:28}{cells}")
    for label, rate in {"transform only": ceiling, **variant_rates}.items():
        print(f"{label:28}{'':18}{rate['per_cpu_s']:>10.1f} ({rate['per_wall_s']:>5.1f})")
    entry_kb = report.size_bytes / max(report.entries, 1) / 1e3
    print(
        f"cache build: {report.new} photos in {wall:.1f} s on {os.cpu_count()} cores "
        f"({report.new / wall:.1f}/s, {report.new / cpu:.1f} per core); entries "
        f"{cache_side(args.size)} px short side, {entry_kb:.0f} kB each ({JPEG_OPTIONS})"
    )

    output = {
        "photos": args.photos,
        "photo_pixels": [WIDTH, HEIGHT],
        "photo_mb": round(source_mb, 2),
        "image_size": args.size,
        "unit": "images per second per CPU core (per_cpu_s) and per wall-clock second",
        "paths": results,
        "train_transform_only": ceiling,
        "train_transform_variants": variant_rates,
        "cache_build": {
            "photos": report.new,
            "seconds": round(wall, 2),
            "per_wall_s": round(report.new / wall, 1),
            "per_cpu_s": round(report.new / cpu, 1),
            "entry_kb": round(entry_kb, 1),
            "cache_side": cache_side(args.size),
            "jpeg": {key: value for key, value in JPEG_OPTIONS.items() if key != "format"},
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pillow": PIL.__version__,
            "torch": torch.__version__,
        },
    }
    args.json.write_text(json.dumps(output, indent=2), encoding="utf-8")
    print(f"written: {args.json}")


if __name__ == "__main__":
    main()

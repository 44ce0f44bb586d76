"""Time a full manifest scan and an incremental re-scan against a bare Pillow header loop.

    uv run python benchmarks/bench_manifest_scan.py [--images 20000] [--folder /tmp/bench_photos]

Goals: re-scan of an unchanged tree ≤ 5% of a full scan; full scan within 1.5× of a loop that
only opens each header with Pillow (both over the same, already-cached files).
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imgcls_pipeline.core.data.manifest import scan_manifest


def build_tree(folder: Path, n_images: int, classes: int = 20) -> list[Path]:
    """``n_images`` small JPEGs in ``classes`` folders, 4 photos per ID (reused if present)."""
    rng = np.random.default_rng(0)
    encoded = []
    for _ in range(16):
        pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
        encoded.append(buffer.getvalue())
    paths = []
    for index in range(n_images):
        class_name = f"class_{index % classes:02d}"
        path = folder / class_name / f"obj{index // 4:06d}_{index % 4 + 1}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encoded[index % len(encoded)])
        paths.append(path)
    return paths


def bare_header_loop(paths: list[Path]) -> float:
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            _ = image.size
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/imgcls_bench_photos"))
    args = parser.parse_args()

    paths = build_tree(args.folder, args.images)
    bare_header_loop(paths)  # warm the page cache so both timings read from memory

    bare = bare_header_loop(paths)
    start = time.perf_counter()
    manifest, opened = scan_manifest(args.folder)
    full = time.perf_counter() - start
    start = time.perf_counter()
    _, reopened = scan_manifest(args.folder, manifest)
    rescan = time.perf_counter() - start

    print(f"images: {len(paths)} (manifest rows {len(manifest)}, headers opened {opened})")
    print(f"bare Pillow header loop: {bare:.2f} s")
    print(
        f"full manifest scan:      {full:.2f} s  ({full / bare:.2f}x the bare loop; goal <= 1.5x)"
    )
    print(
        f"incremental re-scan:     {rescan:.2f} s  ({rescan / full:.1%} of a full scan; goal <= 5%;"
        f" headers reopened {reopened})"
    )


if __name__ == "__main__":
    main()

"""The image_cache asset: the split tables' photos decoded once, for training and embedding."""

import dagster as dg
import pandas as pd

from imgcls_pipeline.core.data.image_cache import cache_folder, cache_side, decide
from imgcls_pipeline.core.data.image_cache_build import build_cache
from imgcls_pipeline.core.data.split_files import read_splits
from imgcls_pipeline.core.data.splitting import SPLITS
from imgcls_pipeline.defs.data_assets import GROUP, splits
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline.defs.run_config import ImageCacheConfig

SHOWN_FAILURES = 20


@dg.asset(
    group_name=GROUP,
    deps=[splits],
    kinds={"pillow"},
    description="Every photo of the split tables decoded once, upright, at about 1.15 × "
    "image_size: artifacts/image_cache/{image_size}/ (JPEG q98). Incremental: only new or changed "
    "photos are decoded, entries of vanished ones are removed. image_cache auto builds it when "
    "photos are at least twice the cache size; training and embedding read it when present.",
)
def image_cache(
    context: dg.AssetExecutionContext, config: ImageCacheConfig, paths: PipelinePaths
) -> dg.MaterializeResult:
    tables = read_splits(paths.splits, SPLITS)
    photos = pd.concat(list(tables.values()), ignore_index=True)
    short_sides = photos[["width", "height"]].min(axis=1).astype(int).tolist()
    build, reason = decide(config.image_cache, short_sides, config.image_size)
    folder = cache_folder(paths.artifacts, config.image_size)
    side = cache_side(config.image_size)
    if not build:
        context.log.info(f"No image cache built: {reason}.")
        return dg.MaterializeResult(
            metadata={
                "built": False,
                "reason": reason,
                "folder": dg.MetadataValue.path(str(folder)),
            },
            data_version=dg.DataVersion(f"off-{config.image_size}"),
        )
    context.log.info(f"Caching {len(photos)} photos at {side} px in {folder} ({reason}).")
    report = build_cache(
        folder,
        paths.data,
        photos["image_path"].tolist(),
        config.image_size,
        progress=bool(context.run.tags.get("imgcls/command")),  # a terminal is watching
        log=context.log.info,
    )
    for image_path, why in list(report.failed.items())[:SHOWN_FAILURES]:
        context.log.warning(f"Not cached: {image_path} ({why}); it is decoded when used.")
    context.log.info(
        f"{report.entries} entries ({report.new} new, {report.reused} reused, {report.pruned} "
        f"pruned), {report.size_bytes / 1e6:.1f} MB, in {report.seconds:.1f} s."
    )
    return dg.MaterializeResult(
        metadata={
            "built": True,
            "reason": reason,
            "dagster/row_count": report.entries,
            "entries": report.entries,
            "size_mb": round(report.size_bytes / 1e6, 1),
            "new": report.new,
            "reused": report.reused,
            "pruned": report.pruned,
            "not_cached": len(report.failed),
            "hit_rate": round(report.hit_rate, 4),
            "seconds": round(report.seconds, 2),
            "images_per_s": round(report.images_per_second, 1),
            "cache_side_px": side,
            "folder": dg.MetadataValue.path(str(folder)),
        },
        # Unchanged photos → the same version, so training is not marked stale by a no-op build.
        data_version=dg.DataVersion(f"{config.image_size}-{report.version}"),
    )

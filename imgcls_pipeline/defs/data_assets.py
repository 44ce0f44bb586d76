"""Assets of the data half: photo folder → image_manifest → id_groups → splits."""

import warnings
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from imgcls_pipeline.core.data.groups import IdGroups, select_id_groups
from imgcls_pipeline.core.data.manifest import (
    LAYOUT_HELP,
    class_folders,
    folder_fingerprint,
    manifest_fingerprint,
    read_saved_manifest,
    scan_manifest,
    write_manifest,
)
from imgcls_pipeline.core.data.split_files import (
    previous_assignment_on_disk,
    read_split_settings,
    write_ledger,
    write_split_files,
    write_split_settings,
)
from imgcls_pipeline.core.data.splitting import (
    MIN_IDS_FOR_ALL_SPLITS,
    SPLITS,
    assign_splits,
    count_table,
    split_tables,
)
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.defs.markdown import counts_markdown, frame_markdown
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline.defs.run_config import IdGroupsConfig, SplitsConfig

GROUP = "data"
# Metadata key of image_manifest: the photo folder's fingerprint when it was scanned.
FINGERPRINT_KEY = "folder_fingerprint"


@dataclass
class SplitResult:
    tables: dict[str, pd.DataFrame]
    excluded: pd.DataFrame
    ratios: dict[str, float]
    seed: int


# Observable source assets are "beta" in Dagster 1.13; the API we use is the documented one.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*observable_source_asset")


@dg.observable_source_asset(
    group_name=GROUP,
    description="The photo folder (IMGCLS_DATA_DIR). Its data version changes when photos are "
    "added, removed or changed, which marks everything downstream as stale.",
)
def photo_folder(paths: PipelinePaths) -> dg.DataVersion:
    return dg.DataVersion(folder_fingerprint(paths.data))


@dg.asset(
    group_name=GROUP,
    deps=[photo_folder],
    kinds={"pandas", "parquet"},
    description="One row per file under the data folder: class, object_id, sequence, width and "
    "height from the header (EXIF orientation applied) and a status. Incremental: unchanged "
    "files are not reopened.",
)
def image_manifest(context: dg.AssetExecutionContext, paths: PipelinePaths) -> pd.DataFrame:
    from_terminal = bool(context.run.tags.get("imgcls/command"))  # a progress bar is watched
    manifest, opened = scan_manifest(
        paths.data, read_saved_manifest(paths.artifacts), progress=from_terminal
    )
    if manifest.empty:
        raise UserError(f"Data folder '{paths.data}' is empty: {LAYOUT_HELP}.")
    cache = write_manifest(paths.artifacts, manifest)
    status_counts = manifest["status"].value_counts()
    context.log.info(
        f"{len(manifest)} files, {opened} headers read, {len(manifest) - opened} reused"
    )
    context.add_output_metadata(
        {
            "dagster/row_count": len(manifest),
            "headers_read": opened,
            "reused_rows": len(manifest) - opened,
            "usable_files": int(status_counts.get("ok", 0)),
            FINGERPRINT_KEY: manifest_fingerprint(manifest),
            "status_counts": dg.MetadataValue.md(counts_markdown(status_counts, "status")),
            "manifest_file": dg.MetadataValue.path(str(cache)),
        }
    )
    return manifest


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    description="ID groups after min_image_size (a group with any too-small photo is dropped "
    "whole), class_names, and label conflicts (an ID under two classes is dropped).",
)
def id_groups(
    context: dg.AssetExecutionContext,
    config: IdGroupsConfig,
    paths: PipelinePaths,
    image_manifest: pd.DataFrame,
) -> IdGroups:
    groups = select_id_groups(
        image_manifest,
        class_folders(paths.data),
        min_image_size=config.min_image_size,
        class_names=config.class_names,
    )
    if groups.images.empty:
        reasons = groups.excluded["reason"].value_counts()
        found = ", ".join(f"{count} {reason}" for reason, count in reasons.items())
        raise UserError(
            f"No usable photo is left in '{paths.data}' ({found}); {LAYOUT_HELP}, each at least "
            f"min_image_size={config.min_image_size} px on its shorter side."
        )
    for class_name in groups.empty_classes:
        context.log.warning(f"Class '{class_name}' has no usable photo; it is left out.")
    if not groups.conflicts.empty:
        context.log.warning(
            f"{len(groups.conflicts)} ID(s) appear under more than one class and were dropped: "
            + ", ".join(groups.conflicts["object_id"].head(20))
        )
    reasons = groups.excluded["reason"].value_counts()
    context.add_output_metadata(
        {
            "dagster/row_count": len(groups.images),
            "ids": int(groups.images["object_id"].nunique()),
            "classes": len(set(groups.images["class_name"])),
            "excluded_files": len(groups.excluded),
            "exclusions_by_reason": dg.MetadataValue.md(counts_markdown(reasons, "reason")),
            "label_conflicts": dg.MetadataValue.md(frame_markdown(groups.conflicts, index=False)),
            "empty_classes": ", ".join(groups.empty_classes) or "none",
        }
    )
    return groups


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "csv"},
    description="train/val/test tables: grouped by ID, stratified by class, seeded, and stable "
    "under new data (assigned IDs keep their split). Written to the splits folder.",
)
def splits(
    context: dg.AssetExecutionContext,
    config: SplitsConfig,
    paths: PipelinePaths,
    id_groups: IdGroups,
) -> SplitResult:
    ratios = {"train": config.train_ratio, "val": config.val_ratio, "test": config.test_ratio}
    previous = previous_assignment_on_disk(paths.splits)
    _warn_if_settings_changed(context, paths, ratios, config.seed, bool(previous))
    images = id_groups.images
    id_classes = dict(zip(images["object_id"], images["class_name"], strict=True))
    assignment = assign_splits(id_classes, ratios, config.seed, previous)
    tables = split_tables(images, assignment)
    written = write_split_files(paths.splits, tables, id_groups.excluded)
    write_ledger(paths.splits, assignment, id_classes)
    write_split_settings(paths.splits, ratios, config.seed)

    kept_ids = set(id_classes)
    carried = sum(1 for object_id in kept_ids if object_id in previous)
    ids_per_class = count_table(tables)
    small = ids_per_class[ids_per_class["total"] < MIN_IDS_FOR_ALL_SPLITS].index.tolist()
    if small:
        context.log.warning(
            f"{len(small)} class(es) have fewer than {MIN_IDS_FOR_ALL_SPLITS} IDs and go to "
            f"train only: {', '.join(small)}"
        )
    context.add_output_metadata(
        {
            **{f"{split}_images": len(tables[split]) for split in SPLITS},
            **{f"{split}_ids": int(tables[split]["object_id"].nunique()) for split in SPLITS},
            "excluded_files": len(id_groups.excluded),
            "ids_kept_from_previous_splits": carried,
            "ids_newly_assigned": len(kept_ids) - carried,
            "ids_per_class_and_split": dg.MetadataValue.md(frame_markdown(ids_per_class)),
            "images_per_class_and_split": dg.MetadataValue.md(
                frame_markdown(count_table(tables, unit="image_path"))
            ),
            "exclusions_by_reason": dg.MetadataValue.md(
                counts_markdown(id_groups.excluded["reason"].value_counts(), "reason")
            ),
            "small_classes_train_only": ", ".join(small) or "none",
            "splits_folder": dg.MetadataValue.path(str(written["train"].parent)),
        }
    )
    return SplitResult(tables=tables, excluded=id_groups.excluded, ratios=ratios, seed=config.seed)


def _warn_if_settings_changed(
    context: dg.AssetExecutionContext,
    paths: PipelinePaths,
    ratios: dict[str, float],
    seed: int,
    has_previous: bool,
) -> None:
    """Stable splits ignore new ratios/seed for IDs already assigned: say so rather than
    leave a user wondering why --train_ratio changed nothing."""
    before = read_split_settings(paths.splits) if has_previous else None
    if before is not None and before != {**ratios, "seed": seed}:
        context.log.warning(
            f"The splits in {paths.splits} were made with {before}; IDs already assigned keep "
            f"their split (stable splits), and only new IDs follow {ratios}, seed {seed}. "
            f"To re-split everything, delete {paths.splits} first."
        )

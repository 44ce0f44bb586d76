"""Asset checks on the split files as written to disk (what training and users actually read)."""

import dagster as dg
import pandas as pd

from imgcls_pipeline.core.data.groups import IdGroups
from imgcls_pipeline.core.data.split_files import read_excluded, read_splits
from imgcls_pipeline.core.data.splitting import SPLITS, share_deviations
from imgcls_pipeline.defs.data_assets import SplitResult, splits
from imgcls_pipeline.defs.metadata import frame_table, rounded, table
from imgcls_pipeline.defs.resources import PipelinePaths

SHARE_TOLERANCE = 0.10  # absolute difference between a split's share of a class's IDs and its ratio
SHARE_CHECK_MIN_IDS = 10  # below this, whole IDs cannot get near the ratios; not judged


def _tables_on_disk(paths: PipelinePaths) -> dict[str, pd.DataFrame]:
    return read_splits(paths.splits, SPLITS)


@dg.asset_check(asset=splits, blocking=True, description="No object_id is in more than one split.")
def no_id_in_two_splits(paths: PipelinePaths) -> dg.AssetCheckResult:
    tables = _tables_on_disk(paths)
    split_ids = pd.concat(
        [t[["object_id"]].drop_duplicates().assign(split=s) for s, t in tables.items()]
    )
    per_id = split_ids.groupby("object_id")["split"].nunique()
    leaking = per_id[per_id > 1].index.tolist()
    return dg.AssetCheckResult(
        passed=not leaking,
        metadata={"ids_in_two_splits": len(leaking), "examples": ", ".join(leaking[:20]) or "none"},
    )


@dg.asset_check(
    asset=splits,
    description=f"Each split's share of every class with ≥ {SHARE_CHECK_MIN_IDS} IDs is within "
    f"±{SHARE_TOLERANCE:.0%} of its ratio.",
)
def split_shares_near_ratios(splits: SplitResult) -> dg.AssetCheckResult:
    deviations = share_deviations(splits.tables, splits.ratios, SHARE_CHECK_MIN_IDS)
    worst = deviations.abs().max(axis=1)
    off = deviations[worst > SHARE_TOLERANCE]
    return dg.AssetCheckResult(
        passed=off.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "classes_judged": len(deviations),
            "classes_off_ratio": len(off),
            "largest_deviation": rounded(float(worst.max())) if len(worst) else 0.0,
            "off_ratio": frame_table(off.rename_axis("class_name")),
        },
    )


@dg.asset_check(
    asset=splits,
    additional_ins={"image_manifest": dg.AssetIn("image_manifest"), "id_groups": dg.AssetIn()},
    description="Every readable, well-named, large-enough, unconflicted photo is in exactly one "
    "split, and every other file is in excluded.csv with a reason that holds.",
)
def every_usable_photo_in_one_split(
    paths: PipelinePaths, image_manifest: pd.DataFrame, id_groups: IdGroups
) -> dg.AssetCheckResult:
    tables = _tables_on_disk(paths)
    excluded = read_excluded(paths.splits)
    in_splits = pd.concat([t["image_path"] for t in tables.values()])
    listed = pd.concat([in_splits, excluded["image_path"]])
    problems = _unexplained(image_manifest, in_splits, excluded, id_groups)
    manifest_paths = set(image_manifest["image_path"])
    problems += [f"listed twice: {p}" for p in listed[listed.duplicated()].head(20)]
    problems += [
        f"in no split and not excluded: {p}" for p in sorted(manifest_paths - set(listed))[:20]
    ]
    problems += [f"not in the data folder: {p}" for p in sorted(set(listed) - manifest_paths)[:20]]
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "files": len(manifest_paths),
            "in_splits": len(in_splits),
            "excluded": len(excluded),
            "problems": table([{"problem": p} for p in problems], ["problem"]),
        },
    )


def _unexplained(
    manifest: pd.DataFrame, in_splits: pd.Series, excluded: pd.DataFrame, groups: IdGroups
) -> list[str]:
    """Re-derive, independently of the filter code, why each file may or may not be used."""
    rows = manifest.set_index("image_path")
    usable = rows[rows["status"] == "ok"]
    short_side = usable[["width", "height"]].min(axis=1)
    problems = []
    for path in in_splits:
        row = rows.loc[path]
        if row["status"] != "ok" or min(row["width"], row["height"]) < groups.min_image_size:
            problems.append(f"in a split but unusable: {path}")
    classes_per_id = (
        usable[usable["class_name"].isin(groups.classes)]
        .groupby("object_id")["class_name"]
        .nunique()
    )
    small_ids = set(usable.loc[short_side < groups.min_image_size, "object_id"])
    for path, reason in zip(excluded["image_path"], excluded["reason"], strict=True):
        if path not in usable.index:
            continue
        row = usable.loc[path]
        holds = {
            "class_not_selected": row["class_name"] not in groups.classes,
            "label_conflict": classes_per_id.get(row["object_id"], 1) > 1,
            "too_small": short_side[path] < groups.min_image_size,
            "group_has_small_image": row["object_id"] in small_ids,
        }.get(reason, False)
        if not holds:
            problems.append(f"excluded as '{reason}' but that does not hold: {path}")
    return problems

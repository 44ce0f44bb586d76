"""ID groups: which photos may be used, and why each of the others may not.

An ID group is every usable photo of one object_id. A group is kept or dropped whole, so no
object ends up half-used (and, later, in two splits).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import pandas as pd

from imgcls_pipeline.core.data.naming import normalize_label
from imgcls_pipeline.core.errors import UserError

IMAGE_COLUMNS = ["image_path", "class_name", "object_id", "sequence", "width", "height"]
EXCLUDED_COLUMNS = ["image_path", "reason", "detail"]


@dataclass
class IdGroups:
    images: pd.DataFrame  # IMAGE_COLUMNS: every photo of every kept group
    excluded: pd.DataFrame  # EXCLUDED_COLUMNS: every other file of the manifest
    conflicts: pd.DataFrame  # object_id, classes: IDs found under more than one class
    classes: list[str]  # classes selected (may include some that ended up with no group)
    min_image_size: int
    empty_classes: list[str] = field(default_factory=list)  # selected, but no usable group


def select_id_groups(
    manifest: pd.DataFrame,
    folders: list[str],
    *,
    min_image_size: int,
    class_names: list[str] | None,
) -> IdGroups:
    """Apply, in order: file status, ``class_names``, label conflicts, ``min_image_size``."""
    classes = _selected_classes(folders, class_names)
    reasons = pd.Series("", index=manifest.index, dtype=object)
    details = manifest["detail"].astype(str).copy()

    reasons[manifest["status"] != "ok"] = manifest["status"]
    usable = reasons == ""
    reasons[usable & ~manifest["class_name"].isin(classes)] = "class_not_selected"

    usable = reasons == ""
    classes_per_id = manifest[usable].groupby("object_id")["class_name"].unique()
    conflicted = classes_per_id[classes_per_id.map(len) > 1]
    in_conflict = usable & manifest["object_id"].isin(conflicted.index)
    reasons[in_conflict] = "label_conflict"
    details[in_conflict] = manifest.loc[in_conflict, "object_id"].map(
        lambda oid: "ID also under " + ", ".join(sorted(conflicted[oid]))
    )

    usable = reasons == ""
    short_side = manifest[["width", "height"]].min(axis=1).fillna(0).astype("int64")
    small = usable & (short_side < min_image_size)
    small_ids = set(manifest.loc[small, "object_id"])
    reasons[small] = "too_small"
    details[small] = short_side[small].map(lambda s: f"shorter side {s} px < {min_image_size}")
    sibling = usable & ~small & manifest["object_id"].isin(small_ids)
    reasons[sibling] = "group_has_small_image"
    details[sibling] = "another photo of this ID is below min_image_size"

    kept = manifest[reasons == ""]
    images = kept[IMAGE_COLUMNS].astype({"width": "int64", "height": "int64", "sequence": "int64"})
    excluded = pd.DataFrame(
        {"image_path": manifest["image_path"], "reason": reasons, "detail": details}
    )[reasons != ""]
    conflicts = pd.DataFrame(
        {"object_id": conflicted.index, "classes": [", ".join(sorted(c)) for c in conflicted]}
    )
    present = set(images["class_name"])
    return IdGroups(
        images=images.reset_index(drop=True),
        excluded=excluded.reset_index(drop=True),
        conflicts=conflicts,
        classes=classes,
        min_image_size=min_image_size,
        empty_classes=[c for c in classes if c not in present],
    )


def _selected_classes(folders: list[str], class_names: list[str] | None) -> list[str]:
    if class_names is None:
        return sorted(folders)
    wanted = [normalize_label(name) for name in class_names]
    for name in wanted:
        if name not in folders:
            close = difflib.get_close_matches(name, folders, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UserError(
                f"class_names lists '{name}', but the data folder has no class folder of that "
                f"name.{hint} Fix class_names, or create the folder."
            )
    return sorted(set(wanted))

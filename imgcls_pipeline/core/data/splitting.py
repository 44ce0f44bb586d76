"""Train/val/test assignment of ID groups: grouped by ID, stratified by class, seeded, and stable.

Stable means: an ID that already has a split keeps it when the data grows; only new IDs are
assigned, each to the split of its class that is furthest below its target count. Last month's
test photos therefore never leak into this month's training set.

Small classes: a class with fewer than ``MIN_IDS_FOR_ALL_SPLITS`` IDs cannot fill three splits.
All its IDs go to train, because the train split is the search gallery: without the class in the
gallery no query can ever be classified as it, and a val/test split of one object would measure
that single object rather than the class. Such classes are reported; once they reach three IDs,
new IDs go where their class is short.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
MIN_IDS_FOR_ALL_SPLITS = 3


def target_counts(n_ids: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Whole-ID targets for a class of ``n_ids`` IDs (largest remainder; see module docstring)."""
    if n_ids < MIN_IDS_FOR_ALL_SPLITS:
        return {"train": n_ids, "val": 0, "test": 0}
    exact = {s: ratios[s] * n_ids for s in SPLITS}
    counts = {s: math.floor(exact[s]) for s in SPLITS}
    by_remainder = sorted(SPLITS, key=lambda s: (-(exact[s] - counts[s]), SPLITS.index(s)))
    for split in by_remainder[: n_ids - sum(counts.values())]:
        counts[split] += 1
    # With three or more IDs every split with a non-zero ratio gets at least one.
    for split in ("val", "test"):
        if ratios[split] > 0 and counts[split] == 0:
            donor = max(SPLITS, key=lambda s: counts[s])
            counts[donor] -= 1
            counts[split] += 1
    return counts


def class_seed(seed: int, class_name: str) -> int:
    """A per-class seed that does not depend on which other classes exist."""
    digest = hashlib.sha256(f"{seed}\0{class_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def assign_splits(
    id_classes: Mapping[str, str],
    ratios: Mapping[str, float],
    seed: int,
    previous: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Map every object_id in ``id_classes`` (object_id → class) to a split.

    IDs found in ``previous`` keep their split; the rest are shuffled with a per-class seed and
    each goes to the split with the largest shortfall against ``target_counts``.
    """
    previous = previous or {}
    by_class: dict[str, list[str]] = {}
    for object_id, class_name in id_classes.items():
        by_class.setdefault(class_name, []).append(object_id)

    assignment: dict[str, str] = {}
    for class_name, object_ids in sorted(by_class.items()):
        counts = dict.fromkeys(SPLITS, 0)
        new_ids = []
        for object_id in sorted(object_ids):
            split = previous.get(object_id)
            if split in SPLITS:
                assignment[object_id] = split
                counts[split] += 1
            else:
                new_ids.append(object_id)
        targets = target_counts(len(object_ids), ratios)
        order = np.random.default_rng(class_seed(seed, class_name)).permutation(len(new_ids))
        for index in order:
            split = max(SPLITS, key=lambda s: (targets[s] - counts[s], -SPLITS.index(s)))
            assignment[new_ids[index]] = split
            counts[split] += 1
    return assignment


def split_tables(images: pd.DataFrame, assignment: Mapping[str, str]) -> dict[str, pd.DataFrame]:
    """The per-split image tables, in a stable order (class, ID, sequence, path)."""
    split_of = images["object_id"].map(assignment)
    ordered = images.assign(_split=split_of).sort_values(
        ["class_name", "object_id", "sequence", "image_path"]
    )
    return {
        split: ordered[ordered["_split"] == split].drop(columns="_split").reset_index(drop=True)
        for split in SPLITS
    }


def count_table(tables: Mapping[str, pd.DataFrame], unit: str = "object_id") -> pd.DataFrame:
    """Class × split counts of IDs (``unit="object_id"``) or images (``unit="image_path"``)."""
    counts = {split: table.groupby("class_name")[unit].nunique() for split, table in tables.items()}
    frame = pd.DataFrame(counts).reindex(columns=list(SPLITS)).fillna(0).astype(int)
    frame["total"] = frame.sum(axis=1)
    return frame.sort_index()


def share_deviations(
    tables: Mapping[str, pd.DataFrame], ratios: Mapping[str, float], min_ids: int
) -> pd.DataFrame:
    """Per class with at least ``min_ids`` IDs: each split's ID share minus its target ratio."""
    counts = count_table(tables)
    counts = counts[counts["total"] >= min_ids]
    deviations = pd.DataFrame(
        {s: counts[s] / counts["total"] - ratios[s] for s in SPLITS}, index=counts.index
    )
    return deviations

"""Whether a scheduled re-training is worth its GPU hours: only when the data changed enough
since the served model was trained (new classes, or enough new photos in train and val)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainedOn:
    """What the served model was trained on, as recorded when it was registered."""

    version: str
    class_names: Collection[str]
    splits_fingerprint: str
    photos: int | None  # train + val photos; None when no record of the count survives


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str  # one sentence, shown as the schedule tick's skip reason or the run's tag
    new_classes: tuple[str, ...] = ()
    new_photos: int = 0


def decide_retrain(
    served: TrainedOn | None,
    *,
    class_names: Collection[str],
    photos: int,
    splits_fingerprint: str,
    min_new_fraction: float,
) -> RetrainDecision:
    """Compare the current train + val split tables (their classes, photo count and fingerprint)
    with what ``served`` was trained on.

    New photos are counted as the growth of train + val: the splits are stable (an ID keeps its
    split), so a photo added lands in one of them; photos removed are not "new data" to learn.
    """
    if served is None:
        return RetrainDecision(True, "No model is served yet: train the first one.")
    if splits_fingerprint == served.splits_fingerprint:
        return RetrainDecision(
            False, f"The train and val splits are unchanged since {served.version} was trained."
        )
    added = tuple(sorted(set(class_names) - set(served.class_names)))
    if added:
        return RetrainDecision(
            True,
            f"{len(added)} new class(es) since {served.version} was trained: {', '.join(added)}.",
            new_classes=added,
        )
    if served.photos is None:
        return RetrainDecision(
            True,
            f"The train and val splits changed since {served.version} was trained, and how many "
            "photos it was trained on is not recorded.",
        )
    new = max(0, photos - served.photos)
    share = new / max(served.photos, 1)
    measured = (
        f"{new} new photo(s) in train and val since {served.version} was trained "
        f"({share:.1%} of its {served.photos}; retrain_min_new_fraction {min_new_fraction:.1%})"
    )
    if new > 0 and share >= min_new_fraction:
        return RetrainDecision(True, f"{measured}.", new_photos=new)
    return RetrainDecision(False, f"Only {measured}.", new_photos=new)

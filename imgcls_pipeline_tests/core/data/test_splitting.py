from hypothesis import given, settings
from hypothesis import strategies as st

from imgcls_pipeline.core.data.splitting import (
    SPLITS,
    assign_splits,
    target_counts,
)

RATIOS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _ids(n_classes: int, per_class: int) -> dict[str, str]:
    return {f"c{c}_id{i}": f"c{c}" for c in range(n_classes) for i in range(per_class)}


def test_targets_follow_ratios() -> None:
    assert target_counts(20, RATIOS) == {"train": 14, "val": 3, "test": 3}
    assert target_counts(10, RATIOS) == {"train": 7, "val": 2, "test": 1}
    assert sum(target_counts(37, RATIOS).values()) == 37


def test_small_classes_go_to_train_and_three_ids_fill_every_split() -> None:
    assert target_counts(1, RATIOS) == {"train": 1, "val": 0, "test": 0}
    assert target_counts(2, RATIOS) == {"train": 2, "val": 0, "test": 0}
    assert target_counts(3, RATIOS) == {"train": 1, "val": 1, "test": 1}


def test_seeded_and_deterministic() -> None:
    ids = _ids(3, 20)
    assert assign_splits(ids, RATIOS, 42) == assign_splits(dict(reversed(ids.items())), RATIOS, 42)
    assert assign_splits(ids, RATIOS, 42) != assign_splits(ids, RATIOS, 7)


def test_stratified_per_class() -> None:
    assignment = assign_splits(_ids(4, 20), RATIOS, 0)
    for c in range(4):
        counts = {s: 0 for s in SPLITS}
        for object_id, split in assignment.items():
            if object_id.startswith(f"c{c}_"):
                counts[split] += 1
        assert counts == {"train": 14, "val": 3, "test": 3}


@settings(max_examples=60, deadline=None)
@given(
    before=st.dictionaries(
        st.text("abcdefgh", min_size=1, max_size=4), st.sampled_from(["x", "y", "z"]), max_size=40
    ),
    added=st.dictionaries(
        st.text("ijklmnop", min_size=1, max_size=4), st.sampled_from(["x", "y", "w"]), max_size=40
    ),
    seed=st.integers(0, 2**31),
)
def test_growth_never_moves_an_assigned_id(before, added, seed) -> None:
    first = assign_splits(before, RATIOS, seed)
    assert set(first) == set(before)
    assert set(first.values()) <= set(SPLITS)
    grown = assign_splits(before | added, RATIOS, seed, previous=first)
    assert set(grown) == set(before) | set(added)
    assert all(grown[object_id] == split for object_id, split in first.items())


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=5), seed=st.integers(0, 1000))
def test_fresh_assignment_hits_targets_exactly(sizes, seed) -> None:
    ids = {f"k{k}_{i}": f"k{k}" for k, n in enumerate(sizes) for i in range(n)}
    assignment = assign_splits(ids, RATIOS, seed)
    for k, n in enumerate(sizes):
        counts = {s: 0 for s in SPLITS}
        for object_id, split in assignment.items():
            if ids[object_id] == f"k{k}":
                counts[split] += 1
        assert counts == target_counts(n, RATIOS)

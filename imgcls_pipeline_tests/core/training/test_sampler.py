import math
from collections import Counter

from imgcls_pipeline.core.training.sampler import PKBatchSampler


def dataset(images_per_object: dict[int, list[int]]):
    """{class: [images of object 0, images of object 1, ...]} -> (labels, object_ids)."""
    labels, object_ids = [], []
    for label, counts in images_per_object.items():
        for obj, count in enumerate(counts):
            labels += [label] * count
            object_ids += [f"{label}-{obj}"] * count
    return labels, object_ids


def test_batches_hold_p_classes_of_k_images_from_distinct_objects():
    labels, object_ids = dataset({c: [2, 2, 2, 2] for c in range(6)})
    sampler = PKBatchSampler(labels, object_ids, samples_per_class=4, classes_per_batch=3, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == math.ceil(48 / 12)
    for batch in batches:
        per_class = Counter(labels[i] for i in batch)
        assert len(per_class) == 3 and set(per_class.values()) == {4}
        for label in per_class:
            objects = [object_ids[i] for i in batch if labels[i] == label]
            assert len(set(objects)) == 4  # 4 objects available: one image of each


def test_all_classes_by_default_and_every_image_once_per_epoch_when_balanced():
    labels, object_ids = dataset({c: [2, 2] for c in range(3)})
    sampler = PKBatchSampler(labels, object_ids, samples_per_class=2, seed=0)
    batches = list(sampler)
    assert len(batches) == 2 and all(len(b) == 6 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(12))


def test_small_class_is_sampled_with_replacement():
    labels, object_ids = dataset({0: [1], 1: [3, 3]})
    batches = list(PKBatchSampler(labels, object_ids, samples_per_class=4, seed=0))
    for batch in batches:
        small = [i for i in batch if labels[i] == 0]
        assert small == [0, 0, 0, 0]


def test_order_depends_only_on_seed_and_epoch():
    labels, object_ids = dataset({c: [3, 2, 1] for c in range(5)})

    def epoch_batches(seed: int, epoch: int) -> list[list[int]]:
        sampler = PKBatchSampler(labels, object_ids, 2, 3, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_batches(7, 3) == epoch_batches(7, 3)
    assert epoch_batches(7, 3) != epoch_batches(7, 4)
    assert epoch_batches(7, 3) != epoch_batches(8, 3)


def test_ranks_get_different_batches_and_the_same_count():
    labels, object_ids = dataset({c: [2, 2, 1] for c in range(4)})
    ranks = [
        PKBatchSampler(labels, object_ids, 2, 2, seed=3, rank=r, world_size=3) for r in range(3)
    ]
    batches = [list(s) for s in ranks]
    assert len({len(b) for b in batches}) == 1 and len(batches[0]) == len(ranks[0])
    single = list(PKBatchSampler(labels, object_ids, 2, 2, seed=3, world_size=1))
    # rank r takes every third batch of the common sequence
    assert batches[0][0] == single[0] and batches[1][0] == single[1]
    assert batches[0] != batches[1] != batches[2]


def test_length_rounds_up_to_whole_accumulation_groups():
    labels, object_ids = dataset({c: [5] for c in range(2)})  # 10 images, batch 2×2 -> 3 batches
    assert len(PKBatchSampler(labels, object_ids, 2, seed=0)) == 3
    sampler = PKBatchSampler(labels, object_ids, 2, seed=0, multiple_of=4)
    assert len(sampler) == 4 == len(list(sampler))

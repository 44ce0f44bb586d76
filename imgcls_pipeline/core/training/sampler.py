"""P×K class-balanced batches: P classes, K images each, for ArcFace/metric learning.

Epoch length: ceil(len(dataset) / (P·K)) batches in all, split over the ranks, so one epoch shows
about as many images as the training split holds whatever P and K are. Each rank gets
ceil(total / world_size) batches (rounded up to a multiple of ``multiple_of``, so that gradient
accumulation always has full groups); every rank therefore runs the same number of steps, which
DDP needs.

Classes are visited in shuffled rounds so every class appears about equally often. Within a class,
images are drawn from an order that interleaves object ids (one image of each object, then a second
of each, ...), so the K images of a batch come from distinct objects whenever the class has K of
them. A class with fewer than K images repeats images (sampling with replacement). The order
depends only on ``seed`` and the epoch given to ``set_epoch``: a resumed run sees the same batches.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        labels: Sequence[int],
        object_ids: Sequence[str],
        samples_per_class: int,
        classes_per_batch: int | None = None,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        multiple_of: int = 1,
    ):
        if len(labels) != len(object_ids):
            raise ValueError("labels and object_ids must have the same length")
        self._by_class: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for index, (label, object_id) in enumerate(zip(labels, object_ids, strict=True)):
            self._by_class[int(label)][str(object_id)].append(index)
        self._classes = sorted(self._by_class)
        self._class_sizes = {c: sum(map(len, self._by_class[c].values())) for c in self._classes}
        self.k = samples_per_class
        self.p = min(classes_per_batch or len(self._classes), len(self._classes))
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        total_batches = math.ceil(len(labels) / (self.p * self.k))
        per_rank = math.ceil(total_batches / world_size)
        self._batches_per_rank = math.ceil(per_rank / multiple_of) * multiple_of

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._batches_per_rank

    def __iter__(self) -> Iterator[list[int]]:
        # Every rank draws the same global sequence and keeps every world_size-th batch.
        rng = np.random.default_rng([self.seed, self.epoch])
        class_queue: deque[int] = deque()
        image_queues: dict[int, deque[int]] = {c: deque() for c in self._classes}
        for batch_number in range(self._batches_per_rank * self.world_size):
            classes = self._next_classes(class_queue, rng)
            batch = [i for c in classes for i in self._next_images(c, image_queues[c], rng)]
            if batch_number % self.world_size == self.rank:
                yield batch

    def _next_classes(self, queue: deque[int], rng: np.random.Generator) -> list[int]:
        chosen: list[int] = []
        while len(chosen) < self.p:
            if not queue:
                queue.extend(int(c) for c in rng.permutation(self._classes))
            candidate = queue.popleft()
            if candidate in chosen:
                # Only at the seam between two rounds: push it to the next batch.
                queue.append(candidate)
                continue
            chosen.append(candidate)
        return chosen

    def _next_images(self, label: int, queue: deque[int], rng: np.random.Generator) -> list[int]:
        chosen: list[int] = []
        while len(chosen) < self.k:
            if not queue:
                queue.extend(self._interleaved_order(label, rng))
            index = queue.popleft()
            if index in chosen and self._class_sizes[label] >= self.k:
                continue  # seam between two rounds; enough images exist to avoid a repeat
            chosen.append(index)
        return chosen

    def _interleaved_order(self, label: int, rng: np.random.Generator) -> list[int]:
        objects = [list(rng.permutation(v)) for v in self._by_class[label].values()]
        order = rng.permutation(len(objects))
        rounds = max(len(images) for images in objects)
        return [int(objects[o][r]) for r in range(rounds) for o in order if r < len(objects[o])]

"""Split tables in, (image tensor, class index, skip note) triples out.

A photo that vanishes or breaks during a long run must not end it. ``ImageDataset`` catches the
photo's ``UnreadableImage`` and, with ``refill_groups``, puts another photo of the same group
(its class) in its place; without, it returns a blank image. Either way the third element of
the item, a note (``skipped.encode_note``), tells the main process, where ``SkippedPhotos`` counts
and logs it; the note travels with the batch, so it works from DataLoader worker processes too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from imgcls_pipeline.core.data.image_cache import ImageCache
from imgcls_pipeline.core.data.images import UnreadableImage, load_rgb
from imgcls_pipeline.core.data.skipped import encode_note

Item = tuple[torch.Tensor, int, str]


def class_list(train_frame: pd.DataFrame) -> list[str]:
    """The model's classes: sorted unique class names of the training split."""
    return sorted(train_frame["class_name"].unique().tolist())


class ImageDataset(Dataset):
    """Rows of a split table; the label is the class's index in ``classes`` (-1 if not in it).

    ``refill_groups`` (one hashable per row, e.g. its class name): an unreadable photo is replaced
    by the next readable photo of the same group, preferring one whose object is not in the batch
    yet, then one not in the batch, so a P×K batch keeps its shape and its classes. Without it,
    an unreadable photo gives a blank image, and the caller must act on the note.

    ``image_cache``: a photo with a current cache entry is read from it (``image_cache``); any
    other is decoded from the photo itself.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        data_dir: str | Path,
        classes: Sequence[str],
        transform: Callable[[object], torch.Tensor],
        target_size: int,
        refill_groups: Sequence[Hashable] | None = None,
        image_cache: ImageCache | None = None,
    ):
        index = {name: i for i, name in enumerate(classes)}
        self.image_paths = frame["image_path"].tolist()
        self.paths = [Path(data_dir) / p for p in self.image_paths]
        self.labels = [index.get(name, -1) for name in frame["class_name"]]
        # Object ids are unique only within a class (the file-name ID in its class folder).
        self.object_ids = [
            f"{c}/{o}" for c, o in zip(frame["class_name"], frame["object_id"], strict=True)
        ]
        self.transform = transform
        self.target_size = target_size
        self.image_cache = image_cache
        self._groups: list[list[int]] | None = None
        if refill_groups is not None:
            members: dict[Hashable, list[int]] = defaultdict(list)
            for i, group in enumerate(refill_groups):
                members[group].append(i)
            self._groups = [members[group] for group in refill_groups]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Item:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[Item]:
        """The whole batch at once (the DataLoader calls this when it exists), so a refill can
        avoid photos and objects the batch already holds."""
        items = []
        for i in indices:
            skipped: list[tuple[str, str]] = []
            image, fatal = self._load(i, skipped), ""
            if image is None and self._groups is not None:
                image, fatal = self._refill(i, indices, skipped)
            if image is None:
                image = Image.new("RGB", (self.target_size, self.target_size))
            items.append((self.transform(image), self.labels[i], encode_note(skipped, fatal)))
        return items

    def _load(self, i: int, skipped: list[tuple[str, str]]) -> Image.Image | None:
        if self.image_cache is not None:
            cached = self.image_cache.load(self.image_paths[i])
            if cached is not None:
                return cached
        try:
            return load_rgb(self.paths[i], self.target_size)
        except UnreadableImage as error:
            skipped.append((error.path, error.reason))
            return None

    def _refill(
        self, i: int, batch: list[int], skipped: list[tuple[str, str]]
    ) -> tuple[Image.Image | None, str]:
        group = self._groups[i]
        start = group.index(i)
        in_batch = set(batch)
        objects_in_batch = {self.object_ids[j] for j in batch}
        # Next in the group's order after i: deterministic, so a resumed run sees the same images.
        ring = group[start + 1 :] + group[:start]
        ring.sort(key=lambda j: (j in in_batch, self.object_ids[j] in objects_in_batch))
        for j in ring:
            image = self._load(j, skipped)
            if image is not None:
                return image, ""
        class_name = self.object_ids[i].split("/")[0]
        return None, (
            f"None of the {len(group)} photos of class {class_name!r} that could stand in for "
            f"{self.paths[i]} can be read any more, so the data folder was probably unmounted or "
            "emptied; bring it back, run `imgcls split` again, then start again (the last "
            "completed epoch is kept)."
        )


def make_loader(
    dataset: Dataset,
    *,
    num_workers: int,
    pin_memory: bool,
    batch_sampler: Sampler[list[int]] | None = None,
    batch_size: int = 64,
    prefetch_factor: int | None = None,
    persistent_workers: bool = False,
) -> DataLoader:
    """A loader over ``dataset``: batches from ``batch_sampler`` if given, else in order.
    ``prefetch_factor`` and ``persistent_workers`` (sampled loaders' workers always persist) as
    ``hardware.loader_settings`` chooses them."""
    if batch_sampler is not None:
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
            prefetch_factor=prefetch_factor,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        prefetch_factor=prefetch_factor,
    )

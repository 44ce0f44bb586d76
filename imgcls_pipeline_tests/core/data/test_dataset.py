"""A photo that vanishes mid-run: skipped, stood in for by its class, noted, counted once."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torchvision.transforms import v2

from imgcls_pipeline.core.data.dataset import ImageDataset, make_loader
from imgcls_pipeline.core.data.skipped import SkippedPhotos
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline_tests.imaging import make_photo_folder

# Each photo gets its own grey level, so a tensor tells which photo it came from.
LAYOUT = {"cat": {"c1": 2, "c2": 1, "c3": 1}, "dog": {"d1": 1, "d2": 1}}


@pytest.fixture
def photos(tmp_path):
    data = make_photo_folder(tmp_path / "data", LAYOUT, (16, 16))
    paths = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.jpg"))
    frame = pd.DataFrame(
        {
            "image_path": paths,
            "class_name": [p.split("/")[0] for p in paths],
            "object_id": [p.split("/")[1].rsplit("_", 1)[0] for p in paths],
        }
    )
    return data, frame


def dataset(data, frame, refill: bool = True) -> ImageDataset:
    to_tensor = v2.Compose([v2.PILToTensor()])
    groups = frame["class_name"].tolist() if refill else None
    return ImageDataset(frame, data, ["cat", "dog"], to_tensor, 16, refill_groups=groups)


def same_image(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a, b)


def test_a_vanished_photo_is_replaced_by_another_object_of_its_class(photos):
    data, frame = photos  # rows: cat/c1_1, cat/c1_2, cat/c2_1, cat/c3_1, dog/d1_1, dog/d2_1
    images = dataset(data, frame)
    intact = {i: images[i][0] for i in range(len(frame))}
    (data / "cat" / "c1_1.jpg").unlink()
    batch = images.__getitems__([0, 2, 4])  # cat c1, cat c2, dog d1
    image, label, note = batch[0]
    assert label == 0
    # c1_2 (same object) and c2_1 (in the batch) are passed over for c3_1.
    assert same_image(image, intact[3])
    assert json.loads(note)["skipped"][0][0] == str(data / "cat" / "c1_1.jpg")
    assert "FileNotFoundError" in json.loads(note)["skipped"][0][1]
    assert [n for _, _, n in batch[1:]] == ["", ""]


def test_without_refill_the_row_is_blank_and_noted(photos):
    data, frame = photos
    (data / "dog" / "d2_1.jpg").unlink()
    image, label, note = dataset(data, frame, refill=False)[5]
    assert label == 1 and int(image.sum()) == 0 and "d2_1.jpg" in note


def test_the_tally_counts_each_photo_once_per_epoch_and_logs_it_once_per_run(photos):
    data, frame = photos
    (data / "dog" / "d1_1.jpg").unlink()
    lines = []
    skipped = SkippedPhotos(lines.append, "a photo of the same class stood in for it")
    loader = make_loader(dataset(data, frame), num_workers=0, pin_memory=False, batch_size=2)
    for _ in range(2):
        batches = list(skipped.watch(loader))
        assert [len(b) for b in batches] == [2, 2, 2]  # (images, labels): notes stripped
        assert skipped.end_epoch() == 1
    assert len(lines) == 1 and "Skipped photo " in lines[0] and "d1_1.jpg" in lines[0]
    assert "a photo of the same class stood in for it" in lines[0]
    assert list(skipped.in_run) == [str(data / "dog" / "d1_1.jpg")]


def test_notes_come_back_from_loader_worker_processes(photos):
    data, frame = photos
    (data / "cat" / "c2_1.jpg").unlink()
    skipped = SkippedPhotos()
    loader = make_loader(dataset(data, frame), num_workers=1, pin_memory=False, batch_size=3)
    images = torch.cat([b[0] for b in skipped.watch(loader)])
    assert images.shape[0] == 6 and skipped.end_epoch() == 1


def test_a_class_with_no_readable_photo_left_stops_with_one_sentence(photos):
    data, frame = photos
    for photo in (data / "dog").iterdir():
        photo.unlink()
    skipped = SkippedPhotos()
    loader = make_loader(dataset(data, frame), num_workers=0, pin_memory=False, batch_size=6)
    with pytest.raises(UserError, match=r"None of the 2 photos of class 'dog' .* unmounted"):
        list(skipped.watch(loader))


def test_a_pass_that_may_not_leave_photos_out_names_them(photos):
    data, frame = photos
    (data / "cat" / "c3_1.jpg").unlink()
    skipped = SkippedPhotos()
    loader = make_loader(dataset(data, frame, refill=False), num_workers=0, pin_memory=False)
    list(skipped.watch(loader))
    with pytest.raises(UserError, match=r"^1 photos .* while embedding: .*c3_1\.jpg \(File"):
        skipped.raise_if_any("embedding")

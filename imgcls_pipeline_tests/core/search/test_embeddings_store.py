from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.search import embeddings_store as store


def split_files(folder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        pd.DataFrame({"image_path": [f"{split}.jpg"]}).to_csv(folder / f"{split}.csv", index=False)


def info(inputs: dict[str, str]) -> store.EmbeddingsInfo:
    return store.EmbeddingsInfo(
        inputs=inputs,
        checkpoint="checkpoints/best_model.pt",
        epoch=3,
        backbone="test_efficientnet",
        image_size=64,
        rows={"train": 2, "val": 1, "test": 0},
    )


def write_all(folder, inputs: dict[str, str]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    matrices = {
        "train": rng.normal(size=(2, 4)).astype(np.float32),
        "val": rng.normal(size=(1, 4)).astype(np.float32),
        "test": np.zeros((0, 4), np.float32),
    }
    for split, matrix in matrices.items():
        store.write_embeddings(folder, split, matrix)
    store.write_info(folder, info(inputs))
    return matrices


def test_round_trip_leaves_only_the_documented_files(tmp_path):
    matrices = write_all(
        tmp_path, {"checkpoint_sha256": "c", "train": "t", "val": "v", "test": "x"}
    )
    for split, matrix in matrices.items():
        read = store.read_embeddings(tmp_path, split, rows=len(matrix))
        assert read.dtype == np.float32
        np.testing.assert_array_equal(read, matrix)
    assert store.read_info(tmp_path) == info(
        {"checkpoint_sha256": "c", "train": "t", "val": "v", "test": "x"}
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["info.json", "test.npy", "train.npy", "val.npy"]


def test_info_json_keeps_its_keys_in_order(tmp_path):
    write_all(tmp_path, {"checkpoint_sha256": "c"})
    written = json.loads((tmp_path / "info.json").read_text())
    assert list(written) == ["inputs", "checkpoint", "epoch", "backbone", "image_size", "rows"]
    assert written["rows"] == {"train": 2, "val": 1, "test": 0}


def test_inputs_signature_is_the_sha256_of_checkpoint_and_split_tables(tmp_path):
    import hashlib

    split_files(tmp_path / "splits")
    checkpoint = tmp_path / "best_model.pt"
    checkpoint.write_bytes(b"weights")
    signature = store.inputs_signature(checkpoint, tmp_path / "splits")
    assert signature["checkpoint_sha256"] == hashlib.sha256(b"weights").hexdigest()
    expected = hashlib.sha256((tmp_path / "splits" / "val.csv").read_bytes()).hexdigest()
    assert signature["val"] == expected
    assert list(signature) == ["checkpoint_sha256", "train", "val", "test"]


def test_switching_flip_tta_makes_the_embeddings_stale(tmp_path):
    split_files(tmp_path / "splits")
    checkpoint = tmp_path / "best_model.pt"
    checkpoint.write_bytes(b"weights")
    folder = tmp_path / "embeddings"
    plain = store.inputs_signature(checkpoint, tmp_path / "splits")
    flipped = store.inputs_signature(checkpoint, tmp_path / "splits", flip_tta=True)
    assert plain == store.inputs_signature(checkpoint, tmp_path / "splits", flip_tta=False)
    write_all(folder, plain)
    assert store.is_current(folder, plain) and not store.is_current(folder, flipped)
    write_all(folder, flipped)
    assert store.is_current(folder, flipped) and not store.is_current(folder, plain)


def test_embeddings_are_current_only_for_the_inputs_they_were_made_from(tmp_path):
    split_files(tmp_path / "splits")
    checkpoint = tmp_path / "best_model.pt"
    checkpoint.write_bytes(b"weights")
    folder = tmp_path / "embeddings"
    inputs = store.inputs_signature(checkpoint, tmp_path / "splits")
    assert not store.is_current(folder, inputs)
    write_all(folder, inputs)
    assert store.is_current(folder, inputs)
    checkpoint.write_bytes(b"retrained weights")
    assert not store.is_current(folder, store.inputs_signature(checkpoint, tmp_path / "splits"))


def test_rewriting_a_split_withdraws_the_info_until_it_is_written_again(tmp_path):
    # A run that dies after rewriting train.npy must not leave an info.json vouching for it.
    inputs = {"checkpoint_sha256": "c"}
    write_all(tmp_path, inputs)
    store.write_embeddings(tmp_path, "train", np.ones((2, 4), np.float32))
    assert not (tmp_path / "info.json").exists()
    assert not store.is_current(tmp_path, inputs)


def test_a_missing_info_file_is_a_user_error_naming_it(tmp_path):
    with pytest.raises(UserError, match=r"No embeddings info at .*info\.json; materialize"):
        store.read_info(tmp_path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{broken", "is not a readable embeddings info file"),
        ("[]", "is not a readable embeddings info file"),
        ('{"inputs": {}}', "lacks the key"),
    ],
)
def test_a_corrupt_info_file_is_one_sentence_naming_it(tmp_path, text, problem):
    write_all(tmp_path, {"checkpoint_sha256": "c"})
    (tmp_path / "info.json").write_text(text)
    with pytest.raises(UserError, match=rf"info\.json {problem}") as caught:
        store.read_info(tmp_path)
    assert "\n" not in str(caught.value)
    assert not store.is_current(tmp_path, {"checkpoint_sha256": "c"})


def test_missing_corrupt_or_stale_embeddings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"No val embeddings at .*val\.npy"):
        store.read_embeddings(tmp_path, "val", rows=1)
    write_all(tmp_path, {"checkpoint_sha256": "c"})
    with pytest.raises(UserError, match=r"train\.npy has 2 rows but train\.csv has 5"):
        store.read_embeddings(tmp_path, "train", rows=5)
    (tmp_path / "val.npy").write_bytes(b"not numpy")
    with pytest.raises(UserError, match=r"val\.npy is not a readable NumPy file"):
        store.read_embeddings(tmp_path, "val", rows=1)

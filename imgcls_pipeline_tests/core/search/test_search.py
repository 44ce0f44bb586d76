from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.search import index as search


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, n: int, dim: int = 32, clusters: int = 40) -> np.ndarray:
    """Embedding-like data: unit vectors around ``clusters`` class centres (fixed per dim)."""
    centres = np.random.default_rng(dim).normal(size=(clusters, dim))
    return unit_rows(centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim)))


def save(index, frame: pd.DataFrame, folder, index_type: str = "flat") -> None:
    search.save_index(
        index,
        frame,
        folder,
        checkpoint="checkpoints/best_model.pt",
        checkpoint_sha256="ab" * 32,
        index_type=index_type,
    )


def gallery_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_path": [f"c{i % 3}/{i:03d}_1.jpg" for i in range(n)],
            "class_name": [f"c{i % 3}" for i in range(n)],
            "object_id": [f"{i:03d}" for i in range(n)],
        }
    )


def test_flat_search_equals_numpy_brute_force():
    rng = np.random.default_rng(0)
    gallery, queries = unit_rows(rng.normal(size=(500, 16))), unit_rows(rng.normal(size=(40, 16)))
    distances, indices = search.search(search.build_index(gallery), queries, 10)
    full = ((queries[:, None].astype(np.float64) - gallery[None]) ** 2).sum(-1)
    want = np.argsort(full, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(indices, want)
    np.testing.assert_allclose(distances, np.take_along_axis(full, want, 1), atol=1e-5)
    assert distances.dtype == np.float32 and indices.dtype == np.int64


def test_search_clips_k_and_accepts_any_float_array():
    gallery = np.random.default_rng(1).normal(size=(7, 8))  # float64
    index = search.build_index(gallery)
    distances, indices = search.search(index, gallery[:, :][::2], 50)  # strided, float64
    assert distances.shape == indices.shape == (4, 7)
    assert indices[:, 0].tolist() == [0, 2, 4, 6]
    assert sorted(indices[0].tolist()) == list(range(7))


def test_search_rejects_bad_k_and_dimension():
    index = search.build_index(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="k must be"):
        search.search(index, np.eye(4), 0)
    with pytest.raises(ValueError, match="dimensions"):
        search.search(index, np.ones((1, 3)), 1)


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_indexes_find_the_exact_nearest_neighbour_almost_always(index_type):
    rng = np.random.default_rng(2)
    gallery = clustered(rng, 4000)
    queries = clustered(np.random.default_rng(3), 300)
    _, exact = search.search(search.build_index(gallery, "flat"), queries, 1)
    _, approximate = search.search(search.build_index(gallery, index_type), queries, 1)
    assert (approximate[:, 0] == exact[:, 0]).mean() >= 0.95


def test_hnsw_returns_k_results_beyond_its_search_beam():
    gallery = clustered(np.random.default_rng(4), 600)
    index = search.build_index(gallery, "hnsw")
    _, indices = search.search(index, gallery[:3], search.HNSW_EF_SEARCH + 200)
    assert (indices >= 0).all()
    assert indices.shape == (3, search.HNSW_EF_SEARCH + 200)


def test_ivf_on_a_tiny_gallery_still_builds():
    index = search.build_index(clustered(np.random.default_rng(5), 10), "ivf")
    assert index.ntotal == 10 and index.nlist == 1


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_save_and_load_round_trip(tmp_path, index_type):
    gallery = clustered(np.random.default_rng(6), 300)
    frame = gallery_frame(300)
    index = search.build_index(gallery, index_type)
    save(index, frame, tmp_path / "index", index_type)
    loaded, loaded_frame = search.load_index(tmp_path / "index")
    pd.testing.assert_frame_equal(loaded_frame, frame)
    assert loaded_frame["object_id"].iloc[7] == "007"
    for before, after in zip(
        search.search(index, gallery[:20], 5), search.search(loaded, gallery[:20], 5), strict=True
    ):
        np.testing.assert_array_equal(before, after)
    # Exactly the bundle: no temporary file left behind by the atomic writes.
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == [
        "gallery.csv",
        "gallery.faiss",
        "info.json",
    ]
    assert search.read_index_info(tmp_path / "index") == {
        "checkpoint": "checkpoints/best_model.pt",
        "checkpoint_sha256": "ab" * 32,
        "index_type": index_type,
        "rows": 300,
    }


def test_save_refuses_a_frame_of_the_wrong_length(tmp_path):
    with pytest.raises(ValueError, match="2 gallery rows for 3"):
        save(search.build_index(np.eye(3)), gallery_frame(2), tmp_path)


def test_load_explains_a_missing_index(tmp_path):
    with pytest.raises(UserError, match=r"No gallery index .*gallery\.faiss, gallery\.csv missing"):
        search.load_index(tmp_path)


def test_load_explains_a_corrupt_index(tmp_path):
    save(search.build_index(np.eye(3)), gallery_frame(3), tmp_path)
    (tmp_path / "gallery.faiss").write_bytes(b"not a faiss index at all")
    with pytest.raises(UserError, match="not a readable Faiss index"):
        search.load_index(tmp_path)


def test_load_explains_a_truncated_index(tmp_path):
    save(search.build_index(np.eye(3)), gallery_frame(3), tmp_path)
    data = (tmp_path / "gallery.faiss").read_bytes()
    (tmp_path / "gallery.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable Faiss index"):
        search.load_index(tmp_path)


def test_load_explains_mismatched_files(tmp_path):
    save(search.build_index(np.eye(3)), gallery_frame(3), tmp_path)
    gallery_frame(2).to_csv(tmp_path / "gallery.csv", index=False)
    with pytest.raises(UserError, match=r"has 2 rows but .* holds 3 vectors"):
        search.load_index(tmp_path)


def test_load_explains_a_gallery_table_without_its_columns(tmp_path):
    save(search.build_index(np.eye(3)), gallery_frame(3), tmp_path)
    (tmp_path / "gallery.csv").write_text("path\na\nb\nc\n")
    with pytest.raises(UserError, match="lacks the column"):
        search.load_index(tmp_path)


def test_index_info_is_empty_for_an_index_saved_without_one(tmp_path):
    save(search.build_index(np.eye(3)), gallery_frame(3), tmp_path)
    (tmp_path / "info.json").unlink()
    assert search.read_index_info(tmp_path) == {}


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_a_corrupt_index_info_is_a_user_error_naming_it(tmp_path, text):
    save(search.build_index(np.eye(3)), gallery_frame(3), tmp_path)
    (tmp_path / "info.json").write_text(text)
    with pytest.raises(UserError, match=r"info\.json is not a readable index info file") as caught:
        search.read_index_info(tmp_path)
    assert "\n" not in str(caught.value)


def test_gpu_request_without_faiss_gpu_is_a_user_error(monkeypatch):
    monkeypatch.setattr(search, "gpu_available", lambda: False)
    with pytest.raises(UserError, match="faiss-gpu"):
        search.build_index(np.eye(3), use_gpu=True)


def test_unknown_index_type_is_a_user_error():
    with pytest.raises(UserError, match="index_type"):
        search.build_index(np.eye(3), "lsh")  # type: ignore[arg-type]


def test_a_crash_while_rewriting_the_index_leaves_no_info_vouching_for_it(tmp_path, monkeypatch):
    frame = gallery_frame(6)
    save(search.build_index(clustered(np.random.default_rng(0), 6)), frame, tmp_path)

    def crash(index, path):
        raise OSError("disk full")

    monkeypatch.setattr(search.faiss, "write_index", crash)
    with pytest.raises(OSError, match="disk full"):
        save(search.build_index(clustered(np.random.default_rng(1), 6)), frame, tmp_path)
    assert not (tmp_path / "info.json").exists()
    assert search.read_index_info(tmp_path) == {}  # nothing claims which checkpoint it holds


def built_from(tmp_path: Path, content: bytes) -> Path:
    """An index bundle whose info names a checkpoint file holding ``content``."""
    index = search.build_index(clustered(np.random.default_rng(0), 6))
    search.save_index(
        index,
        gallery_frame(6),
        tmp_path / "index",
        checkpoint="old/best_model.pt",
        checkpoint_sha256=hashlib.sha256(content).hexdigest(),
        index_type="flat",
    )
    return tmp_path / "index"


def test_an_index_matches_the_checkpoint_it_was_built_from(tmp_path):
    folder = built_from(tmp_path, b"weights A")
    (tmp_path / "a.pt").write_bytes(b"weights A")
    search.check_index_matches(folder, tmp_path / "a.pt")
    search.check_index_matches(folder, tmp_path / "missing.pt")  # load_model names that one


def test_an_index_of_another_checkpoint_is_refused_naming_both(tmp_path):
    folder = built_from(tmp_path, b"weights A")
    (tmp_path / "b.pt").write_bytes(b"weights B")
    with pytest.raises(UserError) as caught:
        search.check_index_matches(folder, str(tmp_path / "b.pt"))
    assert str(caught.value) == (
        f"The index in {folder} was built with another checkpoint than {tmp_path / 'b.pt'}; "
        "materialize embeddings and faiss_index again (imgcls index), or pass the checkpoint "
        "it was built from (old/best_model.pt)."
    )


def test_an_index_without_info_cannot_be_checked_and_is_used(tmp_path):
    folder = built_from(tmp_path, b"weights A")
    (folder / "info.json").unlink()
    (tmp_path / "b.pt").write_bytes(b"weights B")
    search.check_index_matches(folder, tmp_path / "b.pt")


def test_the_index_records_whether_its_gallery_was_flip_augmented(tmp_path):
    index = search.build_index(clustered(np.random.default_rng(0), 6))
    save(index, gallery_frame(6), tmp_path / "plain")
    assert "flip_tta" not in search.read_index_info(tmp_path / "plain")  # same bytes as before
    assert search.gallery_flip_tta(tmp_path / "plain") is False
    search.save_index(
        index,
        gallery_frame(6),
        tmp_path / "tta",
        checkpoint="checkpoints/best_model.pt",
        checkpoint_sha256="ab" * 32,
        index_type="flat",
        flip_tta=True,
    )
    assert search.gallery_flip_tta(tmp_path / "tta") is True
    assert search.gallery_flip_tta(tmp_path / "no_index_yet") is False

"""IVF-PQ (the compressed index for very large galleries) and sharded indexes (IndexShards)."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd
import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.search import index as search
from imgcls_pipeline.core.search import ivfpq, shards

# Measured here: IVF-PQ recall@10 against flat is 0.66 on this set (2,000 clustered 32-D vectors,
# 8 sub-quantizers of 5 bits); the floor leaves room for BLAS rounding, not for a broken index
# (a random one scores ~0.005).
IVFPQ_RECALL_AT_10_FLOOR = 0.55


def clustered(seed: int, n: int, dim: int = 64, clusters: int = 40) -> np.ndarray:
    """Embedding-like unit vectors around fixed class centres."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(dim).normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall_at(k: int, found: np.ndarray, exact: np.ndarray) -> float:
    return float(
        np.mean([len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, exact, strict=True)])
    )


def test_ivfpq_parameters_follow_the_gallery_size():
    nlist, m, bits = ivfpq.parameters(512, 10_000_000)
    assert (nlist, m, bits) == (12649, 64, 8)  # 64 bytes per photo instead of 2,048
    assert ivfpq.parameters(64, 4000) == (102, 16, 6)  # too few rows for 256 codes each
    assert ivfpq.parameters(1, 100)[1] == 1  # any dimension gets a valid sub-quantizer count


def test_ivfpq_trains_on_a_sample_of_a_large_gallery():
    x = clustered(0, 100_000, dim=8)
    index = ivfpq.empty_index(8, len(x))
    sample = ivfpq.training_sample(x, index)
    nlist = faiss.extract_index_ivf(index).nlist
    assert len(sample) == 64 * max(nlist, 256) < len(x)
    np.testing.assert_array_equal(sample, ivfpq.training_sample(x, index))  # seeded
    small = x[:500]
    assert ivfpq.training_sample(small, ivfpq.empty_index(8, 500)) is small


def test_ivfpq_recall_at_10_against_flat_is_above_its_floor():
    gallery, queries = clustered(1, 2000, dim=32), clustered(2, 200, dim=32)
    _, exact = search.search(search.build_index(gallery, "flat"), queries, 10)
    index = search.build_index(gallery, "ivfpq")
    assert isinstance(faiss.downcast_index(faiss.extract_index_ivf(index)), faiss.IndexIVFPQ)
    _, found = search.search(index, queries, 10)
    assert recall_at(10, found, exact) >= IVFPQ_RECALL_AT_10_FLOOR
    # Compressed: far fewer bytes per photo than the 4·D of a flat index.
    assert shards.index_bytes(index, len(gallery)) < 0.2 * 4 * 32 * len(gallery)


@pytest.mark.parametrize("count", [2, 3])
def test_flat_shards_give_the_same_results_as_one_flat_index(count):
    gallery, queries = clustered(3, 3001), clustered(4, 100)
    one = search.search(search.build_index(gallery, "flat"), queries, 15)
    sharded = search.build_index(gallery, "flat", shard_count=count)
    assert shards.is_sharded(sharded) and len(shards.shard_list(sharded)) == count
    assert sharded.ntotal == len(gallery)
    split = search.search(sharded, queries, 15)
    np.testing.assert_array_equal(split[1], one[1])
    np.testing.assert_allclose(split[0], one[0], atol=1e-6)


def test_ivf_shards_return_global_rows_and_match_the_whole_index():
    gallery, queries = clustered(5, 3000), clustered(6, 100)
    whole = search.build_index(gallery, "ivf")
    split = shards.split(whole, 3)
    # Each query probes the same lists in every shard as in the whole index, so it finds the
    # same rows; what a shard returns is the row's number in the whole gallery.
    np.testing.assert_array_equal(
        search.search(split, queries, 10)[1], search.search(whole, queries, 10)[1]
    )
    np.testing.assert_array_equal(search.stored_vectors(split), search.stored_vectors(whole))


def test_a_sharded_index_is_saved_as_one_index_and_loads_back(tmp_path):
    gallery, queries = clustered(7, 900), clustered(8, 30)
    frame = pd.DataFrame(
        {
            "image_path": [f"c/{i}.jpg" for i in range(len(gallery))],
            "class_name": "c",
            "object_id": [str(i) for i in range(len(gallery))],
        }
    )
    for index_type in ("flat", "ivfpq"):
        sharded = search.build_index(gallery, index_type, shard_count=2)
        search.save_index(
            sharded,
            frame,
            tmp_path,
            checkpoint="c.pt",
            checkpoint_sha256="0" * 64,
            index_type=index_type,
        )
        loaded, _ = search.load_index(tmp_path, use_gpu=False)
        assert not shards.is_sharded(loaded) and loaded.ntotal == len(gallery)
        np.testing.assert_array_equal(
            search.search(loaded, queries, 5)[1], search.search(sharded, queries, 5)[1]
        )


def test_shard_count_splits_only_what_does_not_fit_one_device():
    gib = 2**30
    assert shards.shard_count(10 * gib, [80 * gib, 80 * gib]) == 1
    assert shards.shard_count(100 * gib, [80 * gib, 80 * gib]) == 2
    assert shards.shard_count(100 * gib, [80 * gib, 40 * gib, 80 * gib]) == 4  # smallest decides
    assert shards.shard_count(10 * gib, []) == 1  # no GPU: the CPU holds it whole


def test_an_index_too_large_for_every_gpu_is_a_user_error(monkeypatch):
    monkeypatch.setattr(search, "_gpu_free_bytes", lambda: [2**30])
    with pytest.raises(UserError, match="ivfpq"):
        search._gpu_shards(10 * 2**30)
    assert search._gpu_shards(2**20) == 1


def test_an_hnsw_index_cannot_be_sharded():
    with pytest.raises(UserError, match="cannot be sharded"):
        search.build_index(clustered(9, 100), "hnsw", shard_count=2)

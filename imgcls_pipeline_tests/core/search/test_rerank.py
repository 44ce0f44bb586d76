"""Re-ranking against a brute-force reference on a toy set: αQE and DBA written out in numpy."""

import numpy as np
import pandas as pd
import pytest

from imgcls_pipeline.core.search.evaluation import evaluate_split
from imgcls_pipeline.core.search.index import build_index, search, stored_vectors
from imgcls_pipeline.core.search.rerank import Reranker, database_augmentation
from imgcls_pipeline.core.settings import RerankSettings


def unit_rows(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def expanded_by_hand(x: np.ndarray, gallery: np.ndarray, k: int, alpha: float, skip: int = -1):
    """x + Σ over its k most similar gallery rows (row ``skip`` left out) of max(cos, 0)^α · g."""
    cosine = gallery.astype(np.float64) @ x.astype(np.float64)
    candidates = [j for j in np.argsort(-cosine, kind="stable") if j != skip][:k]
    summed = x.astype(np.float64).copy()
    for j in candidates:
        summed += max(cosine[j], 0.0) ** alpha * gallery[j]
    return summed / np.linalg.norm(summed)


def ranking_by_hand(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries.astype(np.float64) @ gallery.T.astype(np.float64)), axis=1)


@pytest.mark.parametrize(("k", "alpha"), [(1, 3.0), (3, 3.0), (4, 0.0), (2, 1.5)])
def test_alpha_qe_equals_the_brute_force_reference(k, alpha):
    rng = np.random.default_rng(0)
    gallery, queries = unit_rows(rng, 30), unit_rows(rng, 7)
    settings = RerankSettings(rerank="alpha_qe", rerank_k=k, rerank_alpha=alpha)
    reranker = Reranker.build(build_index(gallery), settings)
    expanded = reranker.queries(queries)
    reference = np.stack([expanded_by_hand(q, gallery, k, alpha) for q in queries])
    np.testing.assert_allclose(expanded, reference, atol=1e-6)
    _, indices = search(reranker.index, expanded, len(gallery))
    np.testing.assert_array_equal(indices, ranking_by_hand(reference, gallery))


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
def test_dba_then_alpha_qe_equals_the_brute_force_reference(index_type):
    rng = np.random.default_rng(1)
    gallery, queries = unit_rows(rng, 60), unit_rows(rng, 9)
    k, alpha = 3, 3.0
    augmented = np.stack(
        [expanded_by_hand(g, gallery, k, alpha, skip=row) for row, g in enumerate(gallery)]
    )
    settings = RerankSettings(rerank="dba_alpha_qe", rerank_k=k, rerank_alpha=alpha)
    reranker = Reranker.build(build_index(gallery, index_type), settings)
    np.testing.assert_allclose(stored_vectors(reranker.index), augmented, atol=1e-6)
    expanded = reranker.queries(queries)
    reference = np.stack([expanded_by_hand(q, augmented, k, alpha) for q in queries])
    np.testing.assert_allclose(expanded, reference, atol=1e-6)
    _, indices = search(reranker.index, expanded, len(gallery))
    np.testing.assert_array_equal(indices, ranking_by_hand(reference, augmented))


def test_dba_leaves_out_the_vectors_own_row_even_behind_a_duplicate():
    gallery = np.eye(3, dtype=np.float32)[[0, 0, 1]]  # rows 0 and 1 are the same vector
    augmented = database_augmentation(gallery, build_index(gallery), k=1, alpha=1.0)
    # Each duplicate gains the other (cos 1), not itself; row 2 gains a neighbour at cos 0.
    np.testing.assert_allclose(augmented, gallery, atol=1e-6)
    spread = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    augmented = database_augmentation(spread, build_index(spread), k=1, alpha=1.0)
    by_hand = spread[0] + 0.6 * spread[1]
    np.testing.assert_allclose(augmented[0], by_hand / np.linalg.norm(by_hand), atol=1e-6)


def test_none_leaves_the_search_and_the_evaluation_identical():
    rng = np.random.default_rng(2)
    gallery_vectors, query_vectors = unit_rows(rng, 40), unit_rows(rng, 12)
    index = build_index(gallery_vectors)
    reranker = Reranker.build(index, RerankSettings())
    assert reranker.index is index
    assert reranker.queries(query_vectors) is query_vectors
    gallery = pd.DataFrame(
        {"image_path": [f"g{i}" for i in range(40)], "class_name": list("abcd") * 10}
    )
    queries = pd.DataFrame(
        {"image_path": [f"q{i}" for i in range(12)], "class_name": list("abcd") * 3}
    )
    plain = evaluate_split(queries, query_vectors, index, gallery, top_k=5)
    none = evaluate_split(queries, query_vectors, index, gallery, top_k=5, rerank=RerankSettings())
    assert none.metrics == plain.metrics and none.worst_rows == plain.worst_rows


def test_query_expansion_recovers_a_query_whose_nearest_photo_is_of_another_class():
    # Class a lies around (1, 0, 0), class b around (0, 1, 0). The query (class a) lies nearest
    # one b photo, but its other close neighbours are all a photos: expansion pulls it back.
    gallery = np.array(
        [[1, 0.05, 0], [1, 0, 0.05], [1, -0.05, 0], [0.6, 0.8, 0], [0, 1, 0], [0, 1, 0.1]],
        dtype=np.float32,
    )
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    query = np.array([[0.75, 0.62, 0.2]], dtype=np.float32)
    query /= np.linalg.norm(query)
    frame = pd.DataFrame({"image_path": list("012345"), "class_name": list("aaabbb")})
    queries = pd.DataFrame({"image_path": ["q"], "class_name": ["a"]})
    index = build_index(gallery)
    plain = evaluate_split(queries, query, index, frame, recall_k_values=[1], top_k=1)
    settings = RerankSettings(rerank="alpha_qe", rerank_k=4, rerank_alpha=1.0)
    expanded = evaluate_split(
        queries, query, index, frame, recall_k_values=[1], top_k=1, rerank=settings
    )
    assert plain.metrics["recall@1"] == 0.0 and expanded.metrics["recall@1"] == 1.0


def test_a_reranker_built_once_evaluates_as_its_settings_do(monkeypatch):
    rng = np.random.default_rng(3)
    gallery_vectors, query_vectors = unit_rows(rng, 40), unit_rows(rng, 12)
    index = build_index(gallery_vectors)
    gallery = pd.DataFrame(
        {"image_path": [f"g{i}" for i in range(40)], "class_name": list("abcd") * 10}
    )
    queries = pd.DataFrame(
        {"image_path": [f"q{i}" for i in range(12)], "class_name": list("abcd") * 3}
    )
    settings = RerankSettings(rerank="dba_alpha_qe", rerank_k=2)
    from_settings = evaluate_split(queries, query_vectors, index, gallery, rerank=settings)
    reranker = Reranker.build(index, settings)
    builds = []
    monkeypatch.setattr(Reranker, "build", lambda *args: builds.append(args))
    for _ in range(2):  # two splits, one gallery augmentation
        built_once = evaluate_split(queries, query_vectors, index, gallery, rerank=reranker)
        assert built_once.metrics == from_settings.metrics
    assert builds == []

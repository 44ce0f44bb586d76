"""Metrics against plain-Python reference maths on a brute-force (numpy argsort) ranking.

The vectors are small multiples of 1/4, so float32 distances are exact in Faiss and numpy alike:
ties and duplicate vectors are real ties, and both sides must break them by gallery row.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgcls_pipeline.core.search import metrics
from imgcls_pipeline.core.search.index import build_index, search

CLASSES = ["a", "b", "c", "d"]


def exact_vectors(rng: np.random.Generator, n: int, dim: int = 4) -> np.ndarray:
    return (rng.integers(-2, 3, size=(n, dim)) / 4).astype(np.float32)


def reference_ranking(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full distance matrix, each row sorted by (distance, gallery row)."""
    d = ((queries[:, None, :].astype(np.float64) - gallery[None]) ** 2).sum(axis=-1)
    order = np.stack([np.lexsort((np.arange(len(gallery)), row)) for row in d])
    return np.take_along_axis(d, order, 1), order


def reference_vote(labels: list[str], dists: list[float], top_k: int) -> tuple[str, float]:
    labels, dists = labels[:top_k], dists[:top_k]
    weights = [max(0.0, 1 - d / 2) for d in dists]
    if sum(weights) == 0:
        weights = [1.0] * len(labels)
    total: dict[str, float] = {}
    first: dict[str, int] = {}
    for rank, (label, weight) in enumerate(zip(labels, weights, strict=True)):
        total[label] = total.get(label, 0.0) + weight
        first.setdefault(label, rank)
    best = max(total.values())
    winner = min((first[label], label) for label in total if total[label] == best)[1]
    return winner, best / sum(weights)


def reference_ap_at_r(query: str, ranked: list[str], gallery_labels: list[str]) -> float:
    r = gallery_labels.count(query)
    hits, precisions = 0, 0.0
    for rank, label in enumerate(ranked[:r], start=1):
        if label == query:
            hits += 1
            precisions += hits / rank
    return precisions / r


def reference_metrics(query_labels, gallery_labels, ranked_d, ranked_i, ks, top_k) -> dict:
    ranked = [[gallery_labels[g] for g in row] for row in ranked_i]
    votes = [reference_vote(r, list(d), top_k) for r, d in zip(ranked, ranked_d, strict=True)]
    result = {
        f"recall@{k}": np.mean([q in r[:k] for q, r in zip(query_labels, ranked, strict=True)])
        for k in ks
    }
    result["accuracy"] = np.mean([v[0] == q for v, q in zip(votes, query_labels, strict=True)])
    result["nn_accuracy"] = np.mean([r[0] == q for q, r in zip(query_labels, ranked, strict=True)])
    aps = [
        reference_ap_at_r(q, r, gallery_labels)
        for q, r in zip(query_labels, ranked, strict=True)
        if q in gallery_labels
    ]
    result["map@r"] = np.mean(aps) if aps else None
    result["votes"] = votes
    return result


def check_against_reference(seed: int, n_gallery: int, n_query: int, top_k: int) -> None:
    rng = np.random.default_rng(seed)
    gallery = exact_vectors(rng, n_gallery)
    gallery[1::7] = gallery[0]  # duplicates
    queries = exact_vectors(rng, n_query)
    gallery_labels = [CLASSES[i] for i in rng.integers(0, 3, n_gallery)]  # "d": no gallery item
    query_labels = [CLASSES[i] for i in rng.integers(0, 4, n_query)]
    ks = [1, 5]
    depth = max(metrics.neighbours_needed(gallery_labels), top_k, *ks)

    distances, indices = search(build_index(gallery), queries, depth)
    ranked_d, ranked_i = reference_ranking(queries, gallery)
    ranked_d, ranked_i = ranked_d[:, :depth], ranked_i[:, :depth]
    np.testing.assert_array_equal(indices, ranked_i)
    np.testing.assert_array_equal(distances, ranked_d)

    got = metrics.evaluate_retrieval(
        query_labels,
        gallery_labels,
        indices,
        distances,
        recall_k_values=ks,
        top_k=top_k,
        classes=CLASSES,
    )
    want = reference_metrics(query_labels, gallery_labels, ranked_d, ranked_i, ks, top_k)
    for key in ["recall@1", "recall@5", "accuracy", "nn_accuracy", "map@r"]:
        assert got[key] == pytest.approx(want[key]), key
    predicted, confidence = metrics.predict_labels(gallery_labels, indices, distances, top_k)
    assert predicted == [v[0] for v in want["votes"]]
    np.testing.assert_allclose(confidence, [v[1] for v in want["votes"]])
    matrix = np.zeros((4, 4), dtype=int)
    for truth, (vote, _) in zip(query_labels, want["votes"], strict=True):
        matrix[CLASSES.index(truth), CLASSES.index(vote)] += 1
    assert got["confusion_matrix"] == matrix.tolist()
    assert set(got["per_class"]) == set(query_labels)
    for name, result in got["per_class"].items():
        mine = [i for i, label in enumerate(query_labels) if label == name]
        assert result["count"] == len(mine)
        assert result["accuracy"] == pytest.approx(
            np.mean([want["votes"][i][0] == name for i in mine])
        )
        assert result["recall@1"] == pytest.approx(
            np.mean([gallery_labels[ranked_i[i, 0]] == name for i in mine])
        )


@pytest.mark.parametrize(
    ("seed", "n_gallery", "n_query", "top_k"), [(0, 200, 60, 20), (1, 37, 5, 3)]
)
def test_metrics_match_brute_force_reference(seed, n_gallery, n_query, top_k):
    check_against_reference(seed, n_gallery, n_query, top_k)


def test_map_at_r_in_query_blocks_matches_the_reference(monkeypatch):
    monkeypatch.setattr(metrics, "_BLOCK", 7)
    check_against_reference(2, 150, 40, 10)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_gallery=st.integers(1, 60),
    n_query=st.integers(1, 30),
    top_k=st.integers(1, 25),
)
def test_metrics_match_reference_on_any_small_data(seed, n_gallery, n_query, top_k):
    check_against_reference(seed, n_gallery, n_query, top_k)


def test_vote_tie_goes_to_the_class_of_the_nearer_neighbour():
    neighbours = np.array([[1, 0, 0, 1]])
    distances = np.array([[0.2, 0.4, 0.4, 0.6]])  # weights 0.9, 0.8, 0.8, 0.7: 1.6 vs 1.6
    predicted, confidence = metrics.knn_vote(neighbours, distances, top_k=4)
    assert predicted.tolist() == [1]
    assert confidence[0] == pytest.approx(0.5)


def test_vote_treats_sums_equal_up_to_rounding_as_a_tie():
    # Weights 0.95 + 0.75 + 0.1 and 0.9 + 0.9: both 1.8, but not in floating point.
    neighbours = np.array([[0, 1, 1, 0, 0]])
    distances = np.array([[0.1, 0.2, 0.2, 0.5, 1.8]])
    predicted, _ = metrics.knn_vote(neighbours, distances, top_k=5)
    assert predicted.tolist() == [0]


def test_vote_weighs_by_similarity_not_count():
    neighbours = np.array([[2, 1, 1]])
    distances = np.array([[0.0, 1.6, 1.6]])  # weights 1.0 vs 0.2 + 0.2
    predicted, confidence = metrics.knn_vote(neighbours, distances, top_k=3)
    assert predicted.tolist() == [2]
    assert confidence[0] == pytest.approx(1 / 1.4)


def test_vote_falls_back_to_counting_when_every_neighbour_is_dissimilar():
    neighbours = np.array([[0, 1, 1]])
    distances = np.array([[2.5, 3.0, 3.5]])
    predicted, confidence = metrics.knn_vote(neighbours, distances, top_k=3)
    assert predicted.tolist() == [1]
    assert confidence[0] == pytest.approx(2 / 3)


def test_vote_ignores_missing_neighbours_and_marks_queries_without_any():
    neighbours = np.array([[3, -1, -1], [-1, -1, -1]])
    distances = np.array([[0.5, np.inf, np.inf], [np.inf, np.inf, np.inf]])
    predicted, confidence = metrics.knn_vote(neighbours, distances, top_k=3)
    assert predicted.tolist() == [3, metrics.MISSING]
    assert confidence.tolist() == [1.0, 0.0]


def test_average_precision_at_r_follows_the_paper_example():
    # R = 3 items of class 0; ranks 1 and 3 of the first 3 are correct: (1/1 + 2/3) / 3.
    ap = metrics.average_precision_at_r(
        np.array([0]), np.array([[0, 1, 0, 0]]), gallery_class_counts=np.array([3, 1])
    )
    assert ap[0] == pytest.approx((1 + 2 / 3) / 3)


def test_average_precision_at_r_rejects_a_too_shallow_ranking():
    with pytest.raises(ValueError, match="needs 3 neighbours"):
        metrics.average_precision_at_r(np.array([0]), np.array([[0, 1]]), np.array([3, 1]))


def test_neighbours_needed_is_the_largest_gallery_class():
    assert metrics.neighbours_needed(["a", "b", "a", "c", "a"]) == 3
    assert metrics.neighbours_needed([]) == 0


def test_evaluate_retrieval_reports_map_at_r_as_none_when_search_was_shallow():
    gallery_labels = ["a"] * 10 + ["b"] * 10
    indices = np.tile(np.arange(5), (2, 1))
    distances = np.tile(np.linspace(0, 1, 5), (2, 1))
    result = metrics.evaluate_retrieval(["a", "b"], gallery_labels, indices, distances, top_k=5)
    assert result["map@r"] is None
    assert result["recall@1"] == 0.5
    json.dumps(result, allow_nan=False)


def test_evaluate_retrieval_refuses_a_search_shallower_than_k():
    indices = np.zeros((1, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="need 5"):
        metrics.evaluate_retrieval(["a"], ["a"] * 9, indices, np.zeros((1, 3)), top_k=5)


def test_evaluate_retrieval_is_json_ready_with_per_class_results():
    gallery_labels = ["cat", "cat", "dog", "dog"]
    indices = np.array([[0, 2, 1, 3], [0, 1, 2, 3], [2, 3, 0, 1]])
    distances = np.tile(np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32), (3, 1))
    result = metrics.evaluate_retrieval(
        ["cat", "dog", "dog"], gallery_labels, indices, distances, recall_k_values=[1, 3], top_k=4
    )
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result
    assert result["classes"] == ["cat", "dog"]
    assert result["num_queries"] == 3 and result["num_gallery"] == 4
    assert result["recall@1"] == pytest.approx(2 / 3)
    assert result["recall@3"] == 1.0
    assert result["per_class"]["dog"] == {"accuracy": 0.5, "recall@1": 0.5, "count": 2}
    assert result["confusion_matrix"] == [[1, 0], [1, 1]]
    assert math.isclose(result["map@r"], (0.5 + 0.0 + 1.0) / 3)


def test_encode_labels_names_unknown_labels():
    with pytest.raises(ValueError, match="zebra"):
        metrics.encode_labels(["cat", "zebra"], ["cat", "dog"])


def test_recall_at_k_counts_a_hit_anywhere_in_the_first_k():
    queries = np.array([0, 1, 2, 3])
    neighbours = np.array([[0, 1, 1], [0, 1, 2], [1, 0, 2], [metrics.MISSING] * 3])
    # query 0 hit at rank 1, query 1 at rank 2, query 2 at rank 3, query 3 never
    assert metrics.recall_at_k(queries, neighbours, [1, 2, 3]) == {1: 0.25, 2: 0.5, 3: 0.75}

"""Retrieval metrics from ranked neighbours: Recall@K, kNN vote, MAP@R, per class, confusion.

The functions take each query's gallery neighbours already ranked by increasing distance, so they
work with any index, exact or approximate. Classes are integer codes (``encode_labels``), and a
neighbour code of ``MISSING`` (-1) means "no neighbour" (Faiss pads with -1 when it finds fewer
than k). Distances are squared L2 between unit vectors, as Faiss returns them. Ties are broken
by rank, and ``search.search`` ranks equal distances by gallery row, so results are deterministic.

A query whose class has no gallery item can never be matched: it counts as a miss in Recall@K and
accuracy, and is left out of MAP@R, which is undefined for it (as in pytorch-metric-learning).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MISSING = -1
# Relative tolerance under which two vote totals count as equal: sums of the same weights in a
# different order can differ in the last bit.
_TIE_RTOL = 1e-9
_BLOCK = 4096


def encode_labels(labels: Sequence[Any], classes: Sequence[Any]) -> np.ndarray:
    """Map labels to their position in ``classes`` (int64); a label outside it is a ValueError."""
    code_of = {name: code for code, name in enumerate(classes)}
    unknown = sorted({str(label) for label in labels if label not in code_of})
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not in the class list")
    return np.fromiter((code_of[label] for label in labels), dtype=np.int64, count=len(labels))


def neighbour_codes(indices: np.ndarray, gallery_codes: np.ndarray) -> np.ndarray:
    """Class codes of ranked gallery rows ``indices`` (Q, K); -1 rows stay ``MISSING``."""
    found = indices >= 0
    codes = np.full(indices.shape, MISSING, dtype=np.int64)
    codes[found] = gallery_codes[indices[found]]
    return codes


def neighbours_needed(gallery_labels: Sequence[Any]) -> int:
    """How many neighbours per query MAP@R needs: the size of the largest gallery class."""
    _, counts = np.unique(np.asarray(gallery_labels), return_counts=True)
    return int(counts.max()) if counts.size else 0


def recall_hits(query_codes: np.ndarray, neighbours: np.ndarray, k: int) -> np.ndarray:
    """Per query: does any of the ``k`` nearest neighbours share its class? (bool, (Q,))"""
    return (neighbours[:, :k] == query_codes[:, None]).any(axis=1)


def recall_at_k(
    query_codes: np.ndarray, neighbours: np.ndarray, ks: Sequence[int]
) -> dict[int, float]:
    """Recall@K for each K in ``ks``: the share of queries with a same-class item in their K
    nearest. Training's per-epoch validation and the evaluation report both use this one."""
    return {k: float(recall_hits(query_codes, neighbours, k).mean()) for k in ks}


def similarity_weights(distances: np.ndarray) -> np.ndarray:
    """Vote weight of a neighbour: cosine similarity, clipped at 0.

    For unit vectors ‖q − g‖² = 2 − 2·cos(q, g), so cos = 1 − d²/2. A neighbour at cosine ≤ 0 is
    no evidence for its class, so it weighs nothing.
    """
    return np.clip(1.0 - distances.astype(np.float64) / 2.0, 0.0, None)


def knn_vote(
    neighbours: np.ndarray, distances: np.ndarray, top_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Similarity-weighted vote of the ``top_k`` nearest neighbours.

    Returns (predicted class code, confidence) per query, where confidence is the winner's share
    of the total weight. If every weight is 0 the vote falls back to one vote per neighbour. Equal
    totals go to the class whose nearest member ranks first. A query with no neighbour at all gets
    ``MISSING`` and confidence 0.
    """
    codes = neighbours[:, :top_k]
    if codes.shape[1] == 0:
        return np.full(len(codes), MISSING, dtype=np.int64), np.zeros(len(codes))
    valid = codes >= 0
    weights = np.where(valid, similarity_weights(distances[:, :top_k]), 0.0)
    unweighted = weights.sum(axis=1) == 0
    weights[unweighted] = valid[unweighted]
    # Total weight of each slot's class within its row: memory (Q, K), whatever the class count.
    totals = np.stack(
        [(weights * (codes == codes[:, [slot]])).sum(axis=1) for slot in range(codes.shape[1])],
        axis=1,
    )
    totals[~valid] = -1.0
    best = totals.max(axis=1, initial=-1.0)
    # argmax takes the first tied slot, i.e. the tied class whose nearest member ranks first.
    winner = np.argmax(totals >= best[:, None] * (1 - _TIE_RTOL), axis=1)
    rows = np.arange(len(codes))
    has_vote = valid.any(axis=1)
    predicted = np.where(has_vote, codes[rows, winner], MISSING)
    confidence = np.divide(best, weights.sum(axis=1), out=np.zeros(len(codes)), where=has_vote)
    return predicted.astype(np.int64), confidence


def predict_labels(
    gallery_labels: Sequence[Any], indices: np.ndarray, distances: np.ndarray, top_k: int
) -> tuple[list[Any], np.ndarray]:
    """Vote predictions as labels (``None`` for a query without neighbours) and confidences."""
    classes = sorted(set(gallery_labels))
    neighbours = neighbour_codes(indices, encode_labels(gallery_labels, classes))
    predicted, confidence = knn_vote(neighbours, distances, top_k)
    return [classes[code] if code >= 0 else None for code in predicted], confidence


def average_precision_at_r(
    query_codes: np.ndarray, neighbours: np.ndarray, gallery_class_counts: np.ndarray
) -> np.ndarray:
    """AP@R per query (Musgrave et al., "A Metric Learning Reality Check", 2020).

    R is the number of gallery items of the query's class; AP@R averages, over those R, the
    precision at each rank ≤ R that holds a correct item (so a miss in the first R costs 1/R).
    Queries whose class is absent from the gallery get NaN. ``neighbours`` must be at least
    max R deep (see ``neighbours_needed``); shallower input is a ValueError.
    """
    r = gallery_class_counts[query_codes]
    depth = int(r.max(initial=0))
    if neighbours.shape[1] < depth:
        raise ValueError(f"MAP@R needs {depth} neighbours per query, got {neighbours.shape[1]}")
    ranks = np.arange(1, depth + 1)
    hits = (neighbours[:, :depth] == query_codes[:, None]) & (ranks[None, :] <= r[:, None])
    precision = np.cumsum(hits, axis=1) / ranks
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > 0, (precision * hits).sum(axis=1) / r, np.nan)


def confusion_matrix(true_codes: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes × classes) counts, rows true, columns predicted; queries with no vote skipped."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    voted = predicted >= 0
    np.add.at(matrix, (true_codes[voted], predicted[voted]), 1)
    return matrix


def evaluate_retrieval(
    query_labels: Sequence[Any],
    gallery_labels: Sequence[Any],
    indices: np.ndarray,
    distances: np.ndarray,
    *,
    recall_k_values: Sequence[int] = (1, 5),
    top_k: int = 20,
    classes: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """All metrics of one split, JSON-serialisable.

    ``indices``/``distances`` are the (Q, K) search results (gallery rows, squared L2, ranked,
    -1 padded). They must reach ``min(max(recall_k_values + [top_k]), gallery size)`` deep; MAP@R
    is ``None`` unless they also reach ``neighbours_needed(gallery_labels)``.
    """
    if classes is None:
        classes = sorted(set(gallery_labels) | set(query_labels))
    queries = encode_labels(query_labels, classes)
    gallery = encode_labels(gallery_labels, classes)
    _check_depth(indices, len(queries), len(gallery), max([*recall_k_values, top_k]))
    neighbours = neighbour_codes(indices, gallery)
    counts = np.bincount(gallery, minlength=len(classes))
    predicted, _ = knn_vote(neighbours, distances, top_k)
    correct = predicted == queries
    nearest_hit = recall_hits(queries, neighbours, 1)
    metrics: dict[str, Any] = {
        f"recall@{k}": value
        for k, value in recall_at_k(queries, neighbours, recall_k_values).items()
    }
    metrics["accuracy"] = float(correct.mean())
    metrics["nn_accuracy"] = float(nearest_hit.mean())
    metrics["map@r"] = _map_at_r(queries, neighbours, counts)
    metrics["per_class"] = _per_class(queries, correct, nearest_hit, classes)
    metrics["confusion_matrix"] = confusion_matrix(queries, predicted, len(classes)).tolist()
    metrics["classes"] = [str(name) for name in classes]
    metrics["num_queries"] = len(queries)
    metrics["num_gallery"] = len(gallery)
    return metrics


def _check_depth(indices: np.ndarray, num_queries: int, num_gallery: int, deepest: int) -> None:
    if num_queries == 0:
        raise ValueError("cannot evaluate retrieval without queries")
    if indices.ndim != 2 or len(indices) != num_queries:
        raise ValueError(f"expected ({num_queries}, K) neighbour indices, got {indices.shape}")
    if indices.shape[1] < min(deepest, num_gallery):
        raise ValueError(
            f"neighbours are {indices.shape[1]} deep; Recall@K and the top-k vote need "
            f"{min(deepest, num_gallery)}"
        )


def _map_at_r(queries: np.ndarray, neighbours: np.ndarray, counts: np.ndarray) -> float | None:
    if neighbours.shape[1] < int(counts[queries].max()):
        return None
    # In blocks of queries: the temporaries are (block, max R) floats.
    ap = np.concatenate(
        [
            average_precision_at_r(queries[s : s + _BLOCK], neighbours[s : s + _BLOCK], counts)
            for s in range(0, len(queries), _BLOCK)
        ]
    )
    ap = ap[~np.isnan(ap)]
    return float(ap.mean()) if ap.size else None


def _per_class(
    queries: np.ndarray, correct: np.ndarray, nearest_hit: np.ndarray, classes: Sequence[Any]
) -> dict[str, dict[str, float | int]]:
    """Accuracy, Recall@1 and query count of each class that has queries."""
    size = len(classes)
    counts = np.bincount(queries, minlength=size)
    right = np.bincount(queries, weights=correct, minlength=size)
    hits = np.bincount(queries, weights=nearest_hit, minlength=size)
    return {
        str(classes[code]): {
            "accuracy": float(right[code] / counts[code]),
            "recall@1": float(hits[code] / counts[code]),
            "count": int(counts[code]),
        }
        for code in np.flatnonzero(counts)
    }

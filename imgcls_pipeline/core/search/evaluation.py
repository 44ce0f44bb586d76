"""Evaluate one split: its embeddings searched against the gallery index, scored by class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import pandas as pd

from imgcls_pipeline.core.search.index import search
from imgcls_pipeline.core.search.metrics import (
    average_precision_at_r,
    encode_labels,
    evaluate_retrieval,
    neighbour_codes,
    neighbours_needed,
    predict_labels,
)
from imgcls_pipeline.core.search.rerank import Reranker
from imgcls_pipeline.core.settings import RerankSettings

# MAP@R needs R = (gallery images of the query's class) neighbours per query. Up to this depth
# all queries are searched at once; deeper, MAP@R is computed over blocks of queries so the
# (block × R) result matrices stay around MAP_AT_R_BLOCK_CELLS entries.
MAX_MAP_AT_R_DEPTH = 1000
MAP_AT_R_BLOCK_CELLS = 20_000_000


@dataclass
class SplitEvaluation:
    metrics: dict[str, Any]
    headline_keys: list[str]
    worst_rows: list[dict[str, Any]] = field(default_factory=list)


def search_depth(gallery_labels: Sequence[Any], recall_k_values: Sequence[int], top_k: int) -> int:
    needed = max(
        *recall_k_values, top_k, min(neighbours_needed(gallery_labels), MAX_MAP_AT_R_DEPTH)
    )
    return min(needed, len(gallery_labels))


def evaluate_split(
    queries: pd.DataFrame,
    query_vectors: np.ndarray,
    index: faiss.Index,
    gallery: pd.DataFrame,
    *,
    recall_k_values: Sequence[int] = (1, 5),
    top_k: int = 20,
    worst: int = 8,
    rerank: RerankSettings | Reranker | None = None,
) -> SplitEvaluation:
    """Metrics of ``queries`` (rows of a split table, with their embeddings) against the index,
    re-ranked as ``rerank`` says (see ``rerank.py``; None or "none": plain search). Pass a built
    ``Reranker`` to evaluate several splits without augmenting the gallery again for each."""
    if len(query_vectors) != len(queries):
        raise ValueError("one embedding per query row is required")
    reranker = rerank if isinstance(rerank, Reranker) else Reranker.build(index, rerank)
    index, query_vectors = reranker.index, reranker.queries(query_vectors)
    gallery_labels = gallery["class_name"].tolist()
    depth = search_depth(gallery_labels, recall_k_values, top_k)
    distances, indices = search(index, query_vectors, depth)
    metrics = evaluate_retrieval(
        queries["class_name"].tolist(),
        gallery_labels,
        indices,
        distances,
        recall_k_values=recall_k_values,
        top_k=top_k,
    )
    if metrics.get("map@r") is None:
        metrics["map@r"] = blocked_map_at_r(
            index,
            query_vectors,
            queries["class_name"].tolist(),
            gallery_labels,
            metrics["classes"],
        )
    headline = [f"recall@{k}" for k in recall_k_values] + ["accuracy", "nn_accuracy"]
    if metrics.get("map@r") is not None:
        headline.append("map@r")
    rows = worst_query_rows(queries, gallery, indices, distances, top_k=top_k, count=worst)
    return SplitEvaluation(metrics, headline, rows)


def blocked_map_at_r(
    index: faiss.Index,
    query_vectors: np.ndarray,
    query_labels: Sequence[Any],
    gallery_labels: Sequence[Any],
    classes: Sequence[Any],
) -> float | None:
    """MAP@R for galleries whose largest class is too deep to search for every query at once."""
    query_codes = encode_labels(query_labels, classes)
    gallery_codes = encode_labels(gallery_labels, classes)
    counts = np.bincount(gallery_codes, minlength=len(classes))
    depth = min(int(counts.max(initial=0)), len(gallery_codes))
    if depth == 0 or len(query_codes) == 0:
        return None
    block = max(1, MAP_AT_R_BLOCK_CELLS // depth)
    scores = []
    for start in range(0, len(query_codes), block):
        _, indices = search(index, query_vectors[start : start + block], depth)
        neighbours = neighbour_codes(indices, gallery_codes)
        scores.append(
            average_precision_at_r(query_codes[start : start + block], neighbours, counts)
        )
    ap = np.concatenate(scores)
    ap = ap[~np.isnan(ap)]
    return float(ap.mean()) if ap.size else None


def worst_query_rows(
    query_frame: pd.DataFrame,
    gallery_frame: pd.DataFrame,
    indices: np.ndarray,
    distances: np.ndarray,
    *,
    top_k: int,
    count: int = 8,
    shown: int = 5,
) -> list[dict[str, Any]]:
    """The ``count`` worst queries for ``report.worst_queries_png``: wrong votes first, then lowest
    vote confidence; each with its ``shown`` nearest gallery images.

    Frames have ``image_path`` and ``class_name``; ``indices``/``distances`` are the search
    results of the queries (ranked, -1 padded) against the gallery rows.
    """
    predicted, confidence = predict_labels(
        gallery_frame["class_name"].tolist(), indices, distances, top_k
    )
    truth = query_frame["class_name"].tolist()
    wrong = np.array([p != t for p, t in zip(predicted, truth, strict=True)])
    order = np.lexsort((np.arange(len(truth)), confidence, ~wrong))[:count]
    rows = []
    for q in order:
        neighbours = [
            {
                "image_path": gallery_frame["image_path"].iat[g],
                "class_name": gallery_frame["class_name"].iat[g],
                "distance": float(d),
            }
            for g, d in zip(indices[q, :shown], distances[q, :shown], strict=True)
            if g >= 0
        ]
        rows.append(
            {
                "image_path": query_frame["image_path"].iat[q],
                "class_name": truth[q],
                "predicted": predicted[q],
                "confidence": float(confidence[q]),
                "neighbours": neighbours,
            }
        )
    return rows

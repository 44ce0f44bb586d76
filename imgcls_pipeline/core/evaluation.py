"""Evaluate one split: its embeddings searched against the gallery index, scored by class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import pandas as pd

from imgcls_pipeline.core.metrics import evaluate_retrieval, neighbours_needed
from imgcls_pipeline.core.report import worst_query_rows
from imgcls_pipeline.core.search import search

# MAP@R needs R = (gallery images of the query's class) neighbours per query. Beyond this depth
# the result matrix gets too large to hold, and MAP@R is reported as null instead of guessed.
MAX_MAP_AT_R_DEPTH = 1000


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
) -> SplitEvaluation:
    """Metrics of ``queries`` (rows of a split table, with their embeddings) against the index."""
    if len(query_vectors) != len(queries):
        raise ValueError("one embedding per query row is required")
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
    headline = [f"recall@{k}" for k in recall_k_values] + ["accuracy", "nn_accuracy"]
    if metrics.get("map@r") is not None:
        headline.append("map@r")
    rows = worst_query_rows(queries, gallery, indices, distances, top_k=top_k, count=worst)
    return SplitEvaluation(metrics, headline, rows)

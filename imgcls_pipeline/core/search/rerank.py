"""Re-ranking at search time: α-query expansion (αQE) and database-side augmentation (DBA).

Both replace a vector by a similarity-weighted sum of itself and its nearest gallery vectors:

    x' = normalise(x + Σ_{i=1..k} max(cos(x, g_i), 0)^α · g_i)

over the ``k`` nearest gallery vectors g_i of x (the vector itself has weight 1 = cos(x, x)^α).
This is αQE as defined by Radenović, Tolias and Chum, "Fine-tuning CNN Image Retrieval with No
Human Annotation" (TPAMI 2018, §5.3); a negative cosine would make the power meaningless and is
no evidence for a neighbour, so it weighs 0, as in the kNN vote (``metrics.similarity_weights``).

- ``alpha_qe``: each query is expanded with its k nearest gallery vectors, then searched again.
- ``dba_alpha_qe``: first every gallery vector is expanded the same way with its k nearest
  *other* gallery vectors (DBA, Arandjelović & Zisserman, "Three things everyone should know to
  improve object retrieval", CVPR 2012, with Radenović et al.'s weights), an exact flat index is
  built over the augmented gallery, and queries are then αQE-expanded against it.

Distances reported after re-ranking are squared L2 between the expanded unit vectors, so the
similarity-weighted vote reads them as before. Only the search changes: the gallery rows, their
order in the index and the stored embeddings stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from imgcls_pipeline.core.search.index import build_index, search, stored_vectors
from imgcls_pipeline.core.search.metrics import similarity_weights
from imgcls_pipeline.core.settings import RerankSettings


def expand(
    vectors: np.ndarray,
    gallery: np.ndarray,
    indices: np.ndarray,
    distances: np.ndarray,
    alpha: float,
) -> np.ndarray:
    """Each row of ``vectors`` plus its ranked gallery neighbours (``indices``, -1 for none, and
    their squared L2 ``distances``) weighted by max(cos, 0)^α, normalised; float32."""
    found = indices >= 0
    weights = np.where(found, similarity_weights(distances) ** alpha, 0.0)
    neighbours = gallery[np.where(found, indices, 0)].astype(np.float64)  # (N, k, D)
    summed = vectors.astype(np.float64) + np.einsum("nk,nkd->nd", weights, neighbours)
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    return (summed / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def database_augmentation(
    gallery: np.ndarray, index: faiss.Index, *, k: int, alpha: float
) -> np.ndarray:
    """Every gallery vector expanded with its ``k`` nearest other gallery vectors."""
    distances, indices = search(index, gallery, k + 1)
    # Drop each vector's own row (normally first; a duplicate may rank before it), else the last.
    others = indices != np.arange(len(gallery))[:, None]
    keep = np.argsort(~others, axis=1, kind="stable")[:, : min(k, indices.shape[1] - 1)]
    return expand(
        gallery,
        gallery,
        np.take_along_axis(indices, keep, 1),
        np.take_along_axis(distances, keep, 1),
        alpha,
    )


@dataclass
class Reranker:
    """The index to search and how to expand queries before searching it."""

    index: faiss.Index
    gallery: np.ndarray | None  # the vectors of ``index``; None: queries are not expanded
    k: int = 0
    alpha: float = 0.0

    @classmethod
    def build(cls, index: faiss.Index, settings: RerankSettings | None) -> Reranker:
        """For ``settings.rerank`` "none" (or no settings), the index as it is, queries as they
        are. For "dba_alpha_qe" this augments the whole gallery: ~k+1 searches per gallery row."""
        if settings is None or settings.rerank == "none":
            return cls(index, None)
        k, alpha = settings.rerank_k, settings.rerank_alpha
        gallery = stored_vectors(index)
        if settings.rerank == "dba_alpha_qe":
            gallery = database_augmentation(gallery, index, k=k, alpha=alpha)
            index = build_index(gallery)
        return cls(index, gallery, k, alpha)

    def queries(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` expanded with their ``k`` nearest rows of the (augmented) gallery."""
        if self.gallery is None or len(vectors) == 0:
            return vectors
        distances, indices = search(self.index, vectors, self.k)
        return expand(vectors, self.gallery, indices, distances, self.alpha)

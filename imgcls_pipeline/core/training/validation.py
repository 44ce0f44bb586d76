"""Per-epoch validation: embed val (queries) and train (gallery) images, exact kNN, Recall@K."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
from torch.utils.data import DataLoader

from imgcls_pipeline.core.training import distributed
from imgcls_pipeline.core.training.model import EmbeddingModel


class Interrupted(Exception):
    """``should_stop`` fired while embedding; the caller abandons the epoch."""


@torch.no_grad()
def embed(
    model: EmbeddingModel,
    loader: DataLoader,
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    should_stop: Callable[[], bool] = lambda: False,
) -> torch.Tensor:
    """Embeddings (N, D) fp32 on the CPU, in loader order; raises Interrupted on ``should_stop``."""
    was_training = model.training
    model.eval()
    chunks = []
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    )
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    try:
        for images, _ in loader:
            if distributed.any_rank(should_stop(), device):
                raise Interrupted
            images = images.to(device, non_blocking=True, memory_format=memory_format)
            with autocast:
                chunks.append(model(images).float().cpu())
    finally:
        model.train(was_training)
    if not chunks:
        return torch.empty(0, model.embedding_dim)
    return torch.cat(chunks)


def recall_at_k(
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    ks: Sequence[int],
    chunk_size: int = 1024,
) -> dict[int, float]:
    """Fraction of queries whose K nearest gallery items (exact) hold one of the same class.

    On unit vectors the largest inner product is the smallest L2 distance, so a matmul is an exact
    kNN search. Queries are processed in chunks so memory stays at chunk_size × gallery size.
    """
    k_max = min(max(ks), gallery.shape[0])
    hits = {k: 0 for k in ks}
    for start in range(0, queries.shape[0], chunk_size):
        scores = queries[start : start + chunk_size] @ gallery.T
        nearest = scores.topk(k_max, dim=1).indices
        same = gallery_labels[nearest] == query_labels[start : start + chunk_size, None]
        for k in ks:
            hits[k] += int(same[:, :k].any(dim=1).sum())
    total = max(queries.shape[0], 1)
    return {k: hits[k] / total for k in ks}

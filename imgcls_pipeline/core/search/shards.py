"""A gallery index split over several devices (faiss ``IndexShards``) when one would not fit.

Each shard holds a contiguous block of gallery rows, numbered as in the whole gallery (IVF shards
store each row's id; flat shards are numbered in sequence by faiss's ``successive_ids``), so a
search over the shards returns the same row numbers (and, for flat, the same neighbours) as one
index over the whole gallery. Queries go to every
shard in parallel and the k best of all shards are kept.

Sharding is a placement: on disk the index is always one CPU index (``merged``), and it is split
again when it is loaded onto GPUs too small for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import faiss
import numpy as np

# Of a GPU's free memory, the share one shard may fill: faiss's StandardGpuResources keeps
# scratch memory beside the index (18 % of the card by default) and a query batch needs room
# for its distance tables and results.
GPU_MEMORY_SHARE = 0.7
# Bytes per row an IVF index keeps besides its code: the row's 64-bit id in its inverted list.
IVF_ID_BYTES = 8


def index_bytes(index: faiss.Index, rows: int) -> int:
    """Memory ``index`` takes once it holds ``rows`` vectors: codes, ids and coarse centroids."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexShards):
        index = faiss.downcast_index(index.at(0))
    if isinstance(index, faiss.IndexIVF):
        centroids = index.nlist * index.d * 4
        return rows * (index.code_size + IVF_ID_BYTES) + centroids
    code_size = getattr(index, "code_size", 4 * index.d)
    return rows * code_size


def shard_count(needed: int, free: Sequence[int]) -> int:
    """How many devices the index must be split over: 1 when it fits the first device, else the
    fewest equal shards that each fit the smallest device's share (may exceed ``len(free)``,
    which the caller refuses)."""
    if not free:
        return 1
    if needed <= GPU_MEMORY_SHARE * free[0]:
        return 1
    per_device = GPU_MEMORY_SHARE * min(free)
    return max(2, math.ceil(needed / per_device))


def sharded(
    trained: faiss.Index,
    x: np.ndarray,
    count: int,
    place: Callable[[faiss.Index, int], faiss.Index] | None = None,
) -> faiss.IndexShards:
    """``count`` copies of the trained, empty ``trained`` index, shard s holding the s-th block
    of rows of ``x``; ``place(shard, s)`` moves shard s to its device first (GPU s)."""
    ivf = _is_ivf(trained)
    shards = _empty_shards(trained)
    bounds = _bounds(len(x), count)
    for s in range(count):
        shard = faiss.clone_index(trained)
        if place is not None:
            shard = place(shard, s)
        block = np.ascontiguousarray(x[bounds[s] : bounds[s + 1]])
        if ivf:
            shard.add_with_ids(block, np.arange(bounds[s], bounds[s + 1], dtype=np.int64))
        else:
            shard.add(block)
        shards.add_shard(shard)
    return shards


def split(
    index: faiss.Index,
    count: int,
    place: Callable[[faiss.Index, int], faiss.Index] | None = None,
) -> faiss.IndexShards:
    """A loaded CPU index (flat or IVF) split into ``count`` shards of contiguous rows."""
    index = faiss.downcast_index(index)
    if not _is_ivf(index):
        vectors = np.asarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)
        empty = faiss.clone_index(index)
        empty.reset()
        return sharded(empty, vectors, count, place)
    # IVF shards keep the stored codes (re-encoding decoded PQ vectors could change them) and
    # their global row ids: each is the whole index less the rows of the other shards.
    shards = _empty_shards(index)
    bounds = _bounds(index.ntotal, count)
    for s in range(count):
        shard = faiss.clone_index(index)
        shard.set_direct_map_type(faiss.DirectMap.NoMap)  # rows cannot be removed with one
        keep = faiss.IDSelectorRange(int(bounds[s]), int(bounds[s + 1]))
        shard.remove_ids(faiss.IDSelectorNot(keep))
        shards.add_shard(place(shard, s) if place is not None else shard)
    return shards


def _is_ivf(index: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexIVF)


def _empty_shards(like: faiss.Index) -> faiss.IndexShards:
    # A flat index cannot store ids, so its shards are numbered in sequence ("successive ids");
    # IVF shards store each row's global id, returned as it is.
    return faiss.IndexShards(like.d, True, not _is_ivf(like))  # threaded


def _bounds(rows: int, count: int) -> np.ndarray:
    return np.linspace(0, rows, count + 1).round().astype(np.int64)


def is_sharded(index: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexShards)


def shard_list(index: faiss.Index) -> list[faiss.Index]:
    shards = faiss.downcast_index(index)
    return [faiss.downcast_index(shards.at(s)) for s in range(shards.count())]


def merged(shards: faiss.Index, to_cpu: Callable[[faiss.Index], faiss.Index]) -> faiss.Index:
    """One CPU index holding every shard's rows in order (what is written to disk)."""
    parts = [to_cpu(shard) for shard in shard_list(shards)]
    whole = faiss.clone_index(parts[0])
    for part in parts[1:]:
        # Flat rows are numbered in order; IVF rows already carry their global ids.
        whole.merge_from(faiss.clone_index(part), 0)
    return whole

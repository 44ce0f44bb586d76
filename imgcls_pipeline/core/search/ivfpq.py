"""IVF-PQ, the compressed gallery index for galleries past ~10 M vectors.

A flat index keeps 4·D bytes per photo (2 KB at D = 512: 20 GB for 10 M photos, beyond most
GPUs once Faiss's scratch memory is counted). IVF-PQ keeps ``m`` bytes per photo (64 at D = 512)
and scans only the ``nprobe`` nearest of ``nlist`` k-means lists; distances are then approximate
(measured against flat in ``benchmarks/bench_search.py``). Every parameter follows from the
gallery size and dimension, so a user only picks ``index_type: ivfpq``.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

# Sub-quantizer counts faiss-gpu's IVF-PQ supports (8-bit codes), so a gallery built here also
# loads onto a GPU.
GPU_SUBQUANTIZERS = (1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96)
# At least 4 dimensions per sub-quantizer: fewer gains little recall for many more bytes.
MIN_DIMS_PER_SUBQUANTIZER = 4
# k-means wants ≥ 39 training points per centroid (Faiss warns below that); more than 64 adds
# training time for no measurable gain, so training uses a sample of at most 64 per centroid.
MIN_POINTS_PER_CENTROID = 39
SAMPLE_POINTS_PER_CENTROID = 64


def list_count(size: int) -> int:
    """~4·√N k-means lists (Faiss's rule of thumb), at most one per 39 gallery rows."""
    return max(1, min(round(4 * math.sqrt(size)), size // MIN_POINTS_PER_CENTROID))


def probe_count(nlist: int) -> int:
    # Probing 1/16 of the lists (at least 8) keeps recall near the exact index's on clustered
    # embeddings while scanning a fraction of the gallery (benchmarks/bench_search.py).
    return min(nlist, max(8, nlist // 16))


def parameters(dim: int, size: int) -> tuple[int, int, int]:
    """(nlist, m sub-quantizers, bits per code) for ``size`` vectors of ``dim`` dimensions.

    ``m`` is the largest GPU-supported divisor of ``dim`` leaving ≥ 4 dimensions each (64 at
    D = 512); codes are 8 bits, fewer on a gallery too small to train 256 centroids per
    sub-quantizer (tests, tiny demos).
    """
    fitting = [
        m for m in GPU_SUBQUANTIZERS if dim % m == 0 and dim // m >= MIN_DIMS_PER_SUBQUANTIZER
    ]
    m = max(fitting, default=1)
    bits = max(1, min(8, int(math.log2(max(2, size // MIN_POINTS_PER_CENTROID)))))
    return list_count(size), m, bits


def empty_index(dim: int, size: int) -> faiss.Index:
    nlist, m, bits = parameters(dim, size)
    index = faiss.index_factory(dim, f"IVF{nlist},PQ{m}x{bits}")
    index.nprobe = probe_count(nlist)
    return index


def training_sample(x: np.ndarray, index: faiss.Index, seed: int = 0) -> np.ndarray:
    """The rows an IVF index is trained on: all of a small gallery, else a seeded random sample
    of 64 per centroid of its largest k-means (coarse lists or PQ codebooks)."""
    ivf = faiss.extract_index_ivf(index)
    centroids = ivf.nlist
    if isinstance(faiss.downcast_index(ivf), faiss.IndexIVFPQ):
        centroids = max(centroids, 1 << faiss.downcast_index(ivf).pq.nbits)
    wanted = SAMPLE_POINTS_PER_CENTROID * centroids
    if len(x) <= wanted:
        return x
    rows = np.random.default_rng(seed).choice(len(x), wanted, replace=False)
    return x[np.sort(rows)]

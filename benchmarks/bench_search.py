"""Search speed of the gallery index: 10k queries against 100k gallery vectors (D=512).

Vectors are unit-norm and clustered around class centres, like trained embeddings (uniform random
vectors in 512-D have no near neighbours, which no real gallery looks like). The approximate
indexes report their recall against the exact flat index: Recall@1 is the share of queries whose
nearest gallery row they find, recall@10 the share of the flat index's 10 nearest rows they
return. Top-1 class accuracy (the nearest row has the query's class) is what classification
sees: near-ties between same-class rows cost recall but not accuracy. Memory is the index's size in bytes per gallery vector; ``--shards N`` adds a flat index
split into N shards (faiss IndexShards), which must return exactly the flat index's neighbours.

    uv run python benchmarks/bench_search.py [--gallery 100000] [--queries 10000] [--shards 2]
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from imgcls_pipeline.core.search.index import build_index, search
from imgcls_pipeline.core.search.shards import index_bytes


def clustered(
    rng: np.random.Generator, centres: np.ndarray, n: int, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(centres), n)
    x = centres[labels] + noise * rng.normal(size=(n, centres.shape[1])).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument(
        "--types", default="flat,ivf,ivfpq,hnsw", help="index types, flat first (the reference)"
    )
    parser.add_argument("--shards", type=int, default=0, help="also a flat index in N shards")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(args.classes, args.dim)).astype(np.float32)
    # Centre and noise coordinates ~N(0, 1) and N(0, 1.3²): same-class pairs at cosine ≈ 0.35,
    # other pairs ≈ 0 — a gallery with real but imperfect class structure.
    noise = 1.3
    gallery, gallery_labels = clustered(rng, centres, args.gallery, noise)
    queries, query_labels = clustered(rng, centres, args.queries, noise)
    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, "
        f"gallery {args.gallery}×{args.dim}, {args.queries} queries, k={args.k}"
    )

    runs = [(name, None) for name in args.types.split(",")]
    if args.shards > 1:
        runs.append(("flat", args.shards))
    exact = None
    for index_type, shard_count in runs:
        start = time.perf_counter()
        index = build_index(gallery, index_type, shard_count=shard_count)
        built = time.perf_counter() - start
        start = time.perf_counter()
        _, indices = search(index, queries, args.k)
        seconds = time.perf_counter() - start
        if exact is None:
            exact = indices
        name = index_type if shard_count is None else f"{index_type}×{shard_count}"
        bytes_per_vector = index_bytes(index, len(gallery)) / len(gallery)
        print(
            f"{name:7s} build {built:7.2f} s  search {seconds:7.2f} s  "
            f"{args.queries / seconds:9.0f} queries/s  {bytes_per_vector:6.0f} B/vector  "
            f"vs flat: recall@1 {(indices[:, 0] == exact[:, 0]).mean():.4f}  "
            f"recall@10 {recall_at_10(indices, exact):.4f}  "
            f"top-1 class accuracy {(gallery_labels[indices[:, 0]] == query_labels).mean():.4f}",
            flush=True,
        )


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact 10 nearest rows found among the index's 10 nearest."""
    hits = [len(set(f[:10]) & set(e[:10])) for f, e in zip(found, exact, strict=True)]
    return float(np.mean(hits)) / min(10, exact.shape[1])


if __name__ == "__main__":
    main()

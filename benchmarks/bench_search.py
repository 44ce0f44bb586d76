"""Search speed of the gallery index: 10k queries against 100k gallery vectors (D=512).

Vectors are unit-norm and clustered around class centres, like trained embeddings (uniform random
vectors in 512-D have no near neighbours, which no real gallery looks like). The approximate
indexes report their Recall@1 against the exact flat index: the share of queries whose nearest
gallery row they find.

    uv run python benchmarks/bench_search.py [--gallery 100000] [--queries 10000]
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from imgcls_pipeline.core.search.index import build_index, search


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)]
    x = x + noise * rng.normal(size=x.shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(args.classes, args.dim)).astype(np.float32)
    # Centre and noise coordinates ~N(0, 1) and N(0, 1.3²): same-class pairs at cosine ≈ 0.35,
    # other pairs ≈ 0 — a gallery with real but imperfect class structure.
    noise = 1.3
    gallery = clustered(rng, centres, args.gallery, noise)
    queries = clustered(rng, centres, args.queries, noise)
    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, "
        f"gallery {args.gallery}×{args.dim}, {args.queries} queries, k={args.k}"
    )

    exact = None
    for index_type in ("flat", "ivf", "hnsw"):
        start = time.perf_counter()
        index = build_index(gallery, index_type)
        built = time.perf_counter() - start
        start = time.perf_counter()
        _, indices = search(index, queries, args.k)
        seconds = time.perf_counter() - start
        if exact is None:
            exact = indices[:, 0]
        recall = (indices[:, 0] == exact).mean()
        print(
            f"{index_type:5s} build {built:7.2f} s  search {seconds:7.2f} s  "
            f"{args.queries / seconds:9.0f} queries/s  recall@1 vs flat {recall:.4f}"
        )


if __name__ == "__main__":
    main()

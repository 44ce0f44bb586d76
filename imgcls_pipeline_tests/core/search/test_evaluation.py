import numpy as np
import pandas as pd

from imgcls_pipeline.core.search import evaluation
from imgcls_pipeline.core.search.evaluation import evaluate_split
from imgcls_pipeline.core.search.index import build_index


def _frames(rng, n_gallery: int, n_queries: int):
    labels = np.array(["a", "b", "c"])
    gallery_classes = labels[rng.integers(0, 3, n_gallery)]
    query_classes = labels[rng.integers(0, 3, n_queries)]
    centres = {"a": 0, "b": 1, "c": 2}

    def vectors(classes):
        x = rng.normal(0, 1.0, (len(classes), 16)).astype(np.float32)
        for row, name in enumerate(classes):
            x[row, centres[name]] += 2.5
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    gallery = pd.DataFrame(
        {
            "image_path": [f"g{i}.jpg" for i in range(n_gallery)],
            "class_name": gallery_classes,
            "object_id": "x",
        }
    )
    queries = pd.DataFrame(
        {"image_path": [f"q{i}.jpg" for i in range(n_queries)], "class_name": query_classes}
    )
    return gallery, vectors(gallery_classes), queries, vectors(query_classes)


def test_map_at_r_is_the_same_when_computed_in_blocks(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    gallery, gallery_vectors, queries, query_vectors = _frames(rng, 300, 40)
    index = build_index(gallery_vectors)
    exact = evaluate_split(queries, query_vectors, index, gallery, top_k=5)
    assert exact.metrics["map@r"] is not None
    # Pretend the largest class is too deep for one search, and blocks hold few queries.
    monkeypatch.setattr(evaluation, "MAX_MAP_AT_R_DEPTH", 10)
    monkeypatch.setattr(evaluation, "MAP_AT_R_BLOCK_CELLS", 500)
    blocked = evaluate_split(queries, query_vectors, index, gallery, top_k=5)
    assert blocked.metrics["map@r"] == exact.metrics["map@r"]
    assert blocked.metrics["recall@1"] == exact.metrics["recall@1"]


def test_worst_query_rows_put_wrong_votes_first_then_low_confidence():
    gallery = pd.DataFrame({"image_path": ["g0", "g1", "g2"], "class_name": ["a", "b", "b"]})
    queries = pd.DataFrame({"image_path": ["q0", "q1", "q2"], "class_name": ["a", "a", "b"]})
    indices = np.array([[0, 1, 2], [1, 2, 0], [1, 0, 2]])
    distances = np.array([[0.1, 1.2, 1.4], [0.1, 0.2, 1.9], [0.1, 0.5, 1.0]], dtype=np.float32)
    rows = evaluation.worst_query_rows(queries, gallery, indices, distances, top_k=3, shown=2)
    assert [row["image_path"] for row in rows] == ["q1", "q0", "q2"]
    assert rows[0]["predicted"] == "b"
    assert [n["image_path"] for n in rows[0]["neighbours"]] == ["g1", "g2"]
    assert rows[0]["neighbours"][0]["distance"] == np.float32(0.1)

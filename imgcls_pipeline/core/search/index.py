"""The Faiss gallery index: build it, search it, and its bundle on disk.

The bundle is ``gallery.faiss`` (the index), ``gallery.csv`` (row i → ``image_path``,
``class_name``, ``object_id`` of index row i) and ``info.json`` (the checkpoint whose embeddings
it holds, by path and SHA-256, the index type and row count).

``flat`` (IndexFlatL2) is exact and the default. ``ivf`` (IndexIVFFlat) and ``hnsw``
(IndexHNSWFlat) are approximate, for galleries in the millions; ``ivfpq`` (IndexIVFPQ, see
``ivfpq.py``) compresses each vector to a few bytes, for galleries past ~10 M. Faiss's L2 indexes
return *squared* L2 distances; for unit vectors d² = 2 − 2·cos, so 0 is identical and 2 is
orthogonal. On disk the index is always one CPU index, so a GPU-built gallery loads on any
machine; on GPUs an index too large for one is split over several (``shards.py``).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import pandas as pd

from imgcls_pipeline.core.atomic import atomic_path, write_csv_atomic, write_text_atomic
from imgcls_pipeline.core.data.table_checks import check_image_paths
from imgcls_pipeline.core.errors import UserError, describe
from imgcls_pipeline.core.hashing import file_sha256
from imgcls_pipeline.core.search import ivfpq, shards
from imgcls_pipeline.core.tables import read_json_object, read_table

IndexType = Literal["flat", "ivf", "ivfpq", "hnsw"]
INDEX_FILE = "gallery.faiss"
GALLERY_FILE = "gallery.csv"
INFO_FILE = "info.json"
FOLDER = "index"  # under the artifacts folder
GALLERY_COLUMNS = ["image_path", "class_name", "object_id"]
HNSW_M = 32
HNSW_EF_SEARCH = 128
# Faiss's GPU k-selection handles at most this many neighbours per query.
GPU_MAX_K = 2048


def build_index(
    embeddings: np.ndarray,
    index_type: IndexType = "flat",
    use_gpu: bool | None = None,
    shard_count: int | None = None,
) -> faiss.Index:
    """Index the (N, D) gallery embeddings; row i of the index is embedding i.

    ``use_gpu=None`` uses faiss-gpu when it is installed and sees a GPU; HNSW always stays on
    the CPU (Faiss has no GPU HNSW). IVF indexes are trained on a sample of the gallery.
    ``shard_count=None`` splits the index over the GPUs only when it would not fit one; a number
    splits it into that many shards (on the CPU, or one per GPU).
    """
    x = _as_float32(embeddings)
    if len(x) == 0:
        raise ValueError("cannot build an index from an empty gallery")
    index = _empty_index(index_type, x.shape[1], len(x))
    sample = None if index.is_trained else ivfpq.training_sample(x, index)  # sized on the CPU
    gpu = _gpu_wanted(use_gpu) and index_type != "hnsw"
    if shard_count is None:
        shard_count = _gpu_shards(shards.index_bytes(index, len(x))) if gpu else 1
    if shard_count > 1 and index_type == "hnsw":
        raise UserError("An hnsw index cannot be sharded; use --index_type=ivfpq or flat.")
    if gpu and shard_count == 1:
        index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    if sample is not None:
        index.train(sample)
    if shard_count > 1:
        return shards.sharded(index, x, shard_count, _on_gpu if gpu else None)
    index.add(x)
    return index


def _empty_index(index_type: str, dim: int, size: int) -> faiss.Index:
    if index_type == "flat":
        return faiss.IndexFlatL2(dim)
    if index_type == "ivf":
        nlist = ivfpq.list_count(size)
        index = faiss.index_factory(dim, f"IVF{nlist},Flat")
        index.nprobe = ivfpq.probe_count(nlist)
        return index
    if index_type == "ivfpq":
        return ivfpq.empty_index(dim, size)
    if index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M)
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return index
    raise UserError(
        f"Unknown index_type '{index_type}'; use --index_type=flat, ivf, ivfpq or hnsw."
    )


def gpu_available() -> bool:
    """faiss-gpu is installed (faiss-cpu has no StandardGpuResources) and sees a GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _gpu_wanted(use_gpu: bool | None) -> bool:
    if use_gpu and not gpu_available():
        raise UserError(
            "A GPU Faiss index was requested but faiss-gpu with a visible GPU is not available; "
            "install faiss-gpu or leave use_gpu unset to search on the CPU."
        )
    return gpu_available() if use_gpu is None else use_gpu


@functools.cache
def _gpu_resources(device: int = 0) -> faiss.StandardGpuResources:
    # One set of GPU scratch memory per device for the process; it must outlive every GPU index.
    return faiss.StandardGpuResources()


def _on_gpu(index: faiss.Index, device: int) -> faiss.Index:
    return faiss.index_cpu_to_gpu(_gpu_resources(device), device, index)


def _gpu_free_bytes() -> list[int]:
    import torch  # only when faiss-gpu is in use: it reports no free memory itself

    return [torch.cuda.mem_get_info(device)[0] for device in range(faiss.get_num_gpus())]


def _gpu_shards(needed: int) -> int:
    """Shards an index of ``needed`` bytes takes on this machine's GPUs (one per GPU at most)."""
    free = _gpu_free_bytes()
    count = shards.shard_count(needed, free)
    if count > len(free):
        raise UserError(
            f"The gallery index needs {needed / 2**30:.1f} GiB, more than the free memory of "
            f"{len(free)} GPU(s) allows; use --index_type=ivfpq (a few bytes per photo) or "
            "search on the CPU (uninstall faiss-gpu or hide the GPUs with CUDA_VISIBLE_DEVICES=)."
        )
    return count


def _is_gpu(index: faiss.Index) -> bool:
    if shards.is_sharded(index):
        return any(_is_gpu(shard) for shard in shards.shard_list(index))
    return hasattr(faiss, "GpuIndex") and isinstance(index, faiss.GpuIndex)


def _to_cpu(index: faiss.Index) -> faiss.Index:
    if shards.is_sharded(index):
        return shards.merged(index, _to_cpu)
    return faiss.index_gpu_to_cpu(index) if _is_gpu(index) else index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest gallery rows of each query: (distances float32, indices int64), (Q, k).

    Distances are squared L2. ``k`` is clipped to the gallery size. Rows are ranked by
    (distance, gallery row), so equal distances come out in a fixed order; Faiss pads with
    index -1 when an approximate index finds fewer than ``k`` (those come last).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    q = _as_float32(queries)
    if q.shape[1] != index.d:
        raise ValueError(f"queries have {q.shape[1]} dimensions, the index {index.d}")
    k = min(k, index.ntotal)
    if k == 0 or len(q) == 0:
        return np.zeros((len(q), k), np.float32), np.zeros((len(q), k), np.int64)
    if _is_gpu(index) and k > GPU_MAX_K:
        index = _to_cpu(index)
    params = None
    if isinstance(index, faiss.IndexHNSW):
        # HNSW returns at most efSearch results, so widen the beam for deep searches.
        params = faiss.SearchParametersHNSW(efSearch=max(index.hnsw.efSearch, k))
    distances, indices = index.search(q, k, params=params)
    return _rank(distances, indices)


def stored_vectors(index: faiss.Index) -> np.ndarray:
    """The (ntotal, D) float32 vectors an index holds, row i = index row i (exact for flat, ivf
    and hnsw, which all store vectors uncompressed; ivfpq gives its compressed approximations)."""
    index = _to_cpu(index)
    if isinstance(index, faiss.IndexIVF):
        index.make_direct_map()  # IVF can only reconstruct by row with a row → list map
    return np.asarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)


def _rank(distances: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    key = np.where(indices < 0, np.inf, distances)
    order = np.lexsort((indices, key), axis=-1)
    return np.take_along_axis(distances, order, 1), np.take_along_axis(indices, order, 1)


def _as_float32(x: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(x, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected an (N, D) array, got shape {array.shape}")
    return array


def save_index(
    index: faiss.Index,
    gallery_frame: pd.DataFrame,
    folder: str | os.PathLike[str],
    *,
    checkpoint: str,
    checkpoint_sha256: str,
    index_type: IndexType,
    flip_tta: bool = False,
) -> None:
    """Write the bundle, each file atomically, ``info.json`` last. ``flip_tta`` records that the
    gallery was embedded with flip test-time augmentation (queries must then be too)."""
    if len(gallery_frame) != index.ntotal:
        raise ValueError(f"{len(gallery_frame)} gallery rows for {index.ntotal} index vectors")
    folder = Path(folder)
    # The old info file goes first: a crash while writing the new index then leaves no info file
    # vouching that the new index holds the old checkpoint's embeddings.
    (folder / INFO_FILE).unlink(missing_ok=True)
    with atomic_path(folder / INDEX_FILE) as temp:
        faiss.write_index(_to_cpu(index), str(temp))
    write_csv_atomic(folder / GALLERY_FILE, gallery_frame[GALLERY_COLUMNS])
    info = {
        "checkpoint": checkpoint,
        "checkpoint_sha256": checkpoint_sha256,
        "index_type": index_type,
        "rows": int(index.ntotal),
    }
    if flip_tta:  # absent when off, so an index saved before the setting existed reads the same
        info["flip_tta"] = True
    write_text_atomic(folder / INFO_FILE, json.dumps(info, indent=2))


def gallery_flip_tta(folder: str | os.PathLike[str]) -> bool:
    """Whether the bundle's gallery was embedded with flip test-time augmentation: a query is
    only comparable with it when embedded the same way."""
    return bool(read_index_info(folder).get("flip_tta", False))


def read_index_info(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The bundle's ``info.json``, or {} for an index saved without one (nothing to check it
    against); an unreadable file is a UserError naming it."""
    path = Path(folder) / INFO_FILE
    if not path.is_file():
        return {}
    return read_json_object(path, what="index info file", remedy="rebuild the faiss_index asset")


def check_index_matches(
    folder: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    index_flag: str | None = None,
) -> None:
    """The bundle in ``folder`` must hold embeddings of ``checkpoint``'s model, or every distance
    is meaningless; one built from another checkpoint is a UserError (naming ``index_flag``, the
    caller's flag for the folder, as a way out)."""
    info = read_index_info(folder)
    if not Path(checkpoint).is_file() or "checkpoint_sha256" not in info:
        return  # load_model names a missing checkpoint; an index without info cannot be checked
    if file_sha256(checkpoint) != info["checkpoint_sha256"]:
        other_index = f"pass {index_flag} with the index of {checkpoint}, " if index_flag else ""
        raise UserError(
            f"The index in {folder} was built with another checkpoint than {checkpoint}; "
            f"{other_index}materialize embeddings and faiss_index again (imgcls index), or pass "
            f"the checkpoint it was built from ({info.get('checkpoint')})."
        )


def load_index(
    folder: str | os.PathLike[str], use_gpu: bool | None = None
) -> tuple[faiss.Index, pd.DataFrame]:
    """The index and gallery table of the bundle; a missing, corrupt or mismatched pair is a
    UserError."""
    folder = Path(folder)
    index_path, gallery_path = folder / INDEX_FILE, folder / GALLERY_FILE
    missing = [p.name for p in (index_path, gallery_path) if not p.is_file()]
    if missing:
        raise UserError(
            f"No gallery index in {folder} ({', '.join(missing)} missing); "
            "build it first by materialising the faiss_index asset."
        )
    index = _read_index(index_path)
    gallery = _read_gallery(gallery_path)
    if len(gallery) != index.ntotal:
        raise UserError(
            f"{gallery_path} has {len(gallery)} rows but {index_path} holds {index.ntotal} "
            "vectors, so they come from different builds; rebuild the faiss_index asset."
        )
    if _gpu_wanted(use_gpu) and not isinstance(index, faiss.IndexHNSW):
        count = _gpu_shards(shards.index_bytes(index, index.ntotal))
        index = shards.split(index, count, _on_gpu) if count > 1 else _on_gpu(index, 0)
    return index, gallery


def _read_index(path: Path) -> faiss.Index:
    try:
        return faiss.read_index(str(path))
    except RuntimeError as error:
        raise UserError(
            f"{path} is not a readable Faiss index ({describe(error)}); delete it and rebuild the "
            "faiss_index asset."
        ) from None


def _read_gallery(path: Path) -> pd.DataFrame:
    remedy = "rebuild the faiss_index asset"
    gallery = read_table(path, GALLERY_COLUMNS, remedy=remedy)
    check_image_paths(
        gallery, path, remedy
    )  # the report opens these photos: only inside the data folder
    return gallery

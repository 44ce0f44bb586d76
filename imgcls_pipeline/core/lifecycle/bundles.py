"""Index bundles: built in a new folder, never changed once complete, served by one switch.

``build_bundle`` embeds every split with one model version, indexes the train split (the
gallery) and evaluates ``eval_splits``, all inside a hidden temporary folder under
``<artifacts>/bundles``, writes ``bundle.json`` last and renames the folder to its bundle id: a
bundle under its own name is always complete. ``serve`` (``serving.py``) then switches it in.
The on-disk layout and the read side are in ``bundle_files.py``.
"""

from __future__ import annotations

import csv
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.lifecycle.bundle_files import (
    BUNDLES,
    Bundle,
    check_dimension,
    check_matches,
    find_bundle,
    served_bundle,
    served_version,
    splits_fingerprint,
    write_bundle_file,
)
from imgcls_pipeline.core.lifecycle.folders import temp_folder, this_builder
from imgcls_pipeline.core.lifecycle.registry import ModelVersion
from imgcls_pipeline.core.lifecycle.serving import discard_bundle, serve
from imgcls_pipeline.core.settings import EvaluationConfig

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from imgcls_pipeline.core.data.image_cache import CacheMode
    from imgcls_pipeline.core.search.inference import LoadedModel

__all__ = [
    "Bundle",
    "build_bundle",
    "check_dimension",
    "check_matches",
    "discard_bundle",
    "find_bundle",
    "serve",
    "served_bundle",
    "served_version",
    "splits_fingerprint",
]
PHOTOS_SUFFIX = "_photos.csv"  # embeddings/<split>_photos.csv
PHOTO_COLUMNS = ("image_path", "size", "mtime_ns")


def build_bundle(
    artifacts: Path,
    version: ModelVersion,
    data_dir: Path,
    splits_dir: Path,
    *,
    flip_tta: bool,
    index_type: str,
    batch_size: int,
    num_workers: int,
    reuse: Bundle | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
    evaluation: EvaluationConfig | None = None,
    figures: bool = False,
    image_cache: CacheMode = "auto",
) -> Bundle:
    """A complete, not yet served bundle of ``version`` for the current split tables.

    With ``reuse`` (a bundle of the same weights and flip_tta), a row whose photo has the same
    path, size and mtime is copied from it and only new or changed photos are embedded: the
    new-photos track. ``evaluation`` (default: the defaults) says which splits are evaluated
    and how; ``figures`` also draws the HTML report and its PNGs. Photos are read from the
    decode-once image cache (``core.data.image_cache``) where it holds them, unless
    ``image_cache`` is off.
    """
    from imgcls_pipeline.core.data.image_cache import open_cache
    from imgcls_pipeline.core.data.split_files import read_splits
    from imgcls_pipeline.core.data.splitting import SPLITS
    from imgcls_pipeline.core.search import embeddings_store
    from imgcls_pipeline.core.search.index import build_index, save_index
    from imgcls_pipeline.core.search.inference import load_model

    evaluation = evaluation or EvaluationConfig()
    fingerprint = splits_fingerprint(splits_dir)
    tables = read_splits(splits_dir, SPLITS)
    if tables["train"].empty:
        raise UserError(
            f"The train split in {splits_dir} has no rows, and it is the search gallery; run "
            "`imgcls split` with train_ratio above 0."
        )
    if reuse is not None and (reuse.checkpoint_sha256, reuse.flip_tta) != (
        version.checkpoint_sha256,
        flip_tta,
    ):
        reuse = None  # another model's or another way's embeddings cannot be mixed in
    loaded = load_model(version.weights)
    cache = open_cache(artifacts, data_dir, loaded.image_size, image_cache)
    build = temp_folder(Path(artifacts) / BUNDLES, "bundle")
    try:
        embeddings = build / embeddings_store.FOLDER
        rows = {}
        for split, frame in tables.items():
            photos = _photo_stats(frame, Path(data_dir))
            matrix = _split_embeddings(
                loaded,
                frame,
                photos,
                Path(data_dir),
                reused=_reusable(reuse, split),
                embed=dict(
                    batch_size=batch_size,
                    num_workers=num_workers,
                    flip_tta=flip_tta,
                    progress=progress,
                    desc=f"embedding {split}",
                    image_cache=cache,
                ),
                log=log,
                split=split,
            )
            embeddings_store.write_embeddings(embeddings, split, matrix)
            _write_photos(embeddings / f"{split}{PHOTOS_SUFFIX}", photos)
            rows[split] = len(frame)
        embeddings_store.write_info(
            embeddings,
            embeddings_store.EmbeddingsInfo(
                inputs=embeddings_store.inputs_signature(
                    version.weights, splits_dir, flip_tta=flip_tta
                ),
                checkpoint=str(version.weights),
                epoch=int(loaded.checkpoint.get("epoch", -1)),
                backbone=loaded.checkpoint["config"]["model"]["backbone"],
                image_size=loaded.image_size,
                rows=rows,
            ),
        )
        gallery = embeddings_store.read_embeddings(embeddings, "train", rows=rows["train"])
        index = build_index(gallery, index_type)  # type: ignore[arg-type]
        save_index(
            index,
            tables["train"],
            build / "index",
            checkpoint=str(version.weights),
            checkpoint_sha256=version.checkpoint_sha256,
            index_type=index_type,  # type: ignore[arg-type]
            flip_tta=flip_tta,
        )
        _evaluate(build, tables, index, Path(data_dir), evaluation, figures, log)
        created = datetime.now(UTC)
        bundle_id = f"{version.version}-{created:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        bundle = Bundle(
            folder=Path(artifacts) / BUNDLES / bundle_id,
            bundle_id=bundle_id,
            model_version=version.version,
            checkpoint_sha256=version.checkpoint_sha256,
            splits_fingerprint=fingerprint,
            flip_tta=flip_tta,
            index_type=index_type,
            dimension=int(index.d),
            created=created.isoformat(timespec="seconds"),
            builder=this_builder(),
        )
        write_bundle_file(build, bundle)
        os.rename(build, bundle.folder)
    except BaseException:
        discard_bundle(build)
        raise
    log(f"Built bundle {bundle_id} of {version.version}: {rows['train']} gallery photos.")
    return bundle


def _photo_stats(frame: pd.DataFrame, data_dir: Path) -> list[tuple[str, int, int]]:
    """(image_path, size, mtime_ns) per row; a missing photo gets (path, -1, -1) and is named
    by the embedding step, which refuses it."""
    stats = []
    for path in frame["image_path"]:
        try:
            stat = (data_dir / path).stat()
            stats.append((path, stat.st_size, stat.st_mtime_ns))
        except OSError:
            stats.append((path, -1, -1))
    return stats


def _reusable(reuse: Bundle | None, split: str) -> dict[tuple[str, int, int], np.ndarray]:
    """The rows of ``reuse``'s ``split`` by their photo (path, size, mtime); none without."""
    import numpy as np

    if reuse is None:
        return {}
    folder = reuse.folder / "embeddings"
    photos_file = folder / f"{split}{PHOTOS_SUFFIX}"
    if not photos_file.is_file():
        return {}
    with open(photos_file, encoding="utf-8", newline="") as handle:
        photos = [
            (r["image_path"], int(r["size"]), int(r["mtime_ns"])) for r in csv.DictReader(handle)
        ]
    matrix = np.load(folder / f"{split}.npy", allow_pickle=False)
    if len(matrix) != len(photos):
        return {}
    return {photo: matrix[row] for row, photo in enumerate(photos) if photo[1] >= 0}


def _split_embeddings(
    loaded: LoadedModel,
    frame: pd.DataFrame,
    photos: list[tuple[str, int, int]],
    data_dir: Path,
    *,
    reused: dict[tuple[str, int, int], np.ndarray],
    embed: dict,
    log: Callable[[str], None],
    split: str,
) -> np.ndarray:
    import numpy as np

    from imgcls_pipeline.core.search.inference import embed_frame

    new_rows = [row for row, photo in enumerate(photos) if photo not in reused]
    if reused:
        log(f"{split}: {len(photos) - len(new_rows)} rows reused, {len(new_rows)} embedded.")
    fresh = embed_frame(loaded, frame.iloc[new_rows].reset_index(drop=True), data_dir, **embed)
    if not reused:
        return fresh
    dimension = fresh.shape[1] if len(new_rows) else len(next(iter(reused.values())))
    matrix = np.empty((len(photos), dimension), dtype=np.float32)
    for row, photo in enumerate(photos):
        if photo in reused:
            matrix[row] = reused[photo]
    if new_rows:
        matrix[new_rows] = fresh
    return matrix


def _write_photos(path: Path, photos: list[tuple[str, int, int]]) -> None:
    from imgcls_pipeline.core.atomic import atomic_path

    with atomic_path(path) as temp, open(temp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(PHOTO_COLUMNS)
        writer.writerows(photos)


def _evaluate(
    build: Path,
    tables: dict[str, pd.DataFrame],
    index: object,
    data_dir: Path,
    config: EvaluationConfig,
    figures: bool,
    log: Callable[[str], None],
) -> None:
    """``evaluation/<split>.json`` of each of ``eval_splits`` (and its figures when asked)."""
    from imgcls_pipeline.core.search import embeddings_store, evaluation_store
    from imgcls_pipeline.core.search.evaluation import evaluate_split

    for split in config.eval_splits:
        queries = tables[split]
        if queries.empty:
            continue
        vectors = embeddings_store.read_embeddings(
            build / embeddings_store.FOLDER, split, rows=len(queries)
        )
        result = evaluate_split(
            queries,
            vectors,
            index,  # type: ignore[arg-type]
            tables["train"],
            recall_k_values=config.recall_k_values,
            top_k=config.top_k,
            rerank=config,
        )
        path = evaluation_store.write_evaluation(
            build / evaluation_store.FOLDER,
            split,
            result.metrics,
            min_val_recall_at_1=config.min_val_recall_at_1,
        )
        if figures:
            from imgcls_pipeline.core.search.report_files import write_evaluation_files

            report = evaluation_store.read_evaluation(path.parent, split) or result.metrics
            write_evaluation_files(path, report, result.worst_rows, data_dir)
        summary = ", ".join(f"{k} {result.metrics[k]:.4f}" for k in result.headline_keys)
        log(f"{split}: {summary}")

"""Using a trained model: embed split tables, and classify new photos by their nearest neighbours."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torchvision.transforms import v2

from imgcls_pipeline.core.data.dataset import ImageDataset, make_loader
from imgcls_pipeline.core.data.image_cache import ImageCache
from imgcls_pipeline.core.data.images import load_rgb
from imgcls_pipeline.core.data.skipped import SkippedPhotos
from imgcls_pipeline.core.data.transforms import eval_transform
from imgcls_pipeline.core.errors import UserError, describe
from imgcls_pipeline.core.search.embedding import compute_embeddings, inference_settings
from imgcls_pipeline.core.search.index import search
from imgcls_pipeline.core.search.metrics import predict_labels
from imgcls_pipeline.core.search.predictions_store import UNKNOWN, Prediction
from imgcls_pipeline.core.search.rerank import Reranker
from imgcls_pipeline.core.settings import RerankSettings
from imgcls_pipeline.core.training.model import EmbeddingModel, load_embedding_model


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class LoadedModel:
    model: EmbeddingModel
    image_size: int
    device: torch.device
    checkpoint: dict[str, Any]
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    def transform(self) -> v2.Compose:
        """The evaluation transform at the size and normalisation the model was trained with."""
        return eval_transform(
            self.image_size, self.model.mean, self.model.std, self.model.interpolation
        )


def load_model(
    checkpoint_path: str | os.PathLike[str], device: torch.device | None = None
) -> LoadedModel:
    """The embedding model of a checkpoint, ready for inference at the size and precision it was
    trained (and validated) at."""
    device = device or pick_device()
    model, checkpoint = load_embedding_model(checkpoint_path, device)
    amp_dtype, channels_last = inference_settings(device, trained_precision(checkpoint))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    image_size = int(checkpoint["config"]["data"]["image_size"])
    return LoadedModel(model, image_size, device, checkpoint, amp_dtype, channels_last)


def trained_precision(checkpoint: Mapping[str, Any]) -> object:
    """The precision the checkpoint's run trained and validated at (``hardware.precision``), or
    None for a checkpoint that does not record it."""
    hardware = checkpoint.get("hardware")
    return hardware.get("precision") if isinstance(hardware, Mapping) else None


def embed_frame(
    loaded: LoadedModel,
    frame: pd.DataFrame,
    data_dir: str | os.PathLike[str],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = False,
    flip_tta: bool = False,
    desc: str = "embedding",
    image_cache: ImageCache | None = None,
) -> np.ndarray:
    """(len(frame), D) float32 unit rows; row i embeds ``data_dir / frame.image_path[i]``
    (with its mirror image too when ``flip_tta``, see ``compute_embeddings``), read from
    ``image_cache`` where it has a current entry."""
    dataset = ImageDataset(
        frame, data_dir, [], loaded.transform(), loaded.image_size, image_cache=image_cache
    )
    loader = make_loader(
        dataset,
        num_workers=num_workers,
        pin_memory=loaded.device.type == "cuda",
        batch_size=batch_size,
    )
    # Row i must be photo i: a photo that vanished after the pre-flight cannot be stood in for,
    # so the whole frame is embedded (to name every such photo) and then refused.
    skipped = SkippedPhotos()
    embeddings = compute_embeddings(
        loaded.model,
        skipped.watch(loader),
        loaded.device,
        amp_dtype=loaded.amp_dtype,
        channels_last=loaded.channels_last,
        progress=progress,
        flip_tta=flip_tta,
        desc=desc,
    )
    skipped.raise_if_any("embedding them")
    return embeddings.reshape(len(frame), -1) if len(frame) else embeddings


def classify(
    loaded: LoadedModel,
    index: faiss.Index,
    gallery: pd.DataFrame,
    paths: list[Path],
    *,
    top_k: int = 20,
    batch_size: int = 32,
    flip_tta: bool = False,
    rerank: RerankSettings | None = None,
    open_set_threshold: float | None = None,
) -> list[Prediction]:
    """Predict each photo's class by a similarity-weighted vote of its ``top_k`` neighbours.

    ``flip_tta`` must match how the gallery was embedded (the embeddings asset's setting);
    ``rerank`` re-ranks the search as evaluation does (see ``rerank.py``). With
    ``open_set_threshold``, a photo whose most similar gallery photo is below that cosine
    similarity is answered ``unknown``: it is probably of no class the gallery knows.

    A photo that cannot be read gets an ``error`` and no prediction; the others still get theirs.
    """
    predictions = [Prediction(str(path)) for path in paths]
    transform = loaded.transform()
    reranker = Reranker.build(index, rerank)  # once: DBA augments the whole gallery
    # Decode and embed one batch at a time: a folder of 10,000 photos at 480 px would not fit
    # in memory as tensors all at once.
    for start in range(0, len(paths), batch_size):
        chunk = list(range(start, min(start + batch_size, len(paths))))
        _classify_batch(
            loaded, transform, reranker, gallery, paths, predictions, chunk, top_k, flip_tta
        )
    if open_set_threshold is not None:
        for prediction in predictions:
            nearest = prediction.neighbours[0]["similarity"] if prediction.neighbours else None
            if nearest is not None and nearest < open_set_threshold:
                prediction.predicted_class = UNKNOWN
    return predictions


def _classify_batch(
    loaded: LoadedModel,
    transform: v2.Compose,
    reranker: Reranker,
    gallery: pd.DataFrame,
    paths: list[Path],
    predictions: list[Prediction],
    positions: list[int],
    top_k: int,
    flip_tta: bool,
) -> None:
    readable: list[tuple[int, torch.Tensor]] = []
    for position in positions:
        path = paths[position]
        try:
            if not path.is_file():
                raise UserError(f"{path} does not exist or is not a file.")
            readable.append((position, transform(load_rgb(path, loaded.image_size))))
        except UserError as error:
            predictions[position].error = _unreadable(path, error)
    if not readable:
        return
    batch = torch.stack([tensor for _, tensor in readable])
    embeddings = compute_embeddings(
        loaded.model,
        [batch],
        loaded.device,
        amp_dtype=loaded.amp_dtype,
        channels_last=loaded.channels_last,
        flip_tta=flip_tta,
    )
    distances, indices = search(reranker.index, reranker.queries(embeddings), top_k)
    labels, confidence = predict_labels(gallery["class_name"].tolist(), indices, distances, top_k)
    for row, (position, _) in enumerate(readable):
        prediction = predictions[position]
        prediction.predicted_class = labels[row]
        prediction.confidence = float(confidence[row])
        prediction.neighbours = [
            {
                "image_path": gallery["image_path"].iat[g],
                "class_name": gallery["class_name"].iat[g],
                "similarity": round(float(similarity), 4),
            }
            # Squared L2 of unit vectors: d = 2 - 2·cos.
            for g, similarity in zip(indices[row], 1.0 - distances[row] / 2.0, strict=True)
            if g >= 0
        ]


def _unreadable(path: Path, error: UserError) -> str:
    """Why a photo given to predict cannot be used, with what to do about it there (the opener's
    own advice is about the data folder)."""
    cause = error.__context__  # the library's error, kept although raised "from None"
    if cause is None:
        return str(error)
    if isinstance(cause, Image.DecompressionBombError):
        return (
            f"cannot read {path}: {describe(cause)}; shrink it (to under "
            f"{2 * Image.MAX_IMAGE_PIXELS:,} pixels) or leave it out."
        )
    return (
        f"cannot read {path} as a photo ({describe(cause)}); pass a JPEG, PNG or other "
        "image file Pillow opens, or leave it out."
    )

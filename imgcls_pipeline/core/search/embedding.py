"""Turn images into L2-normalised embeddings with a model, fast and in order.

The one embedding loop: inference, evaluation and training's per-epoch validation all use it.
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from imgcls_pipeline.core.hardware import (
    DeviceProps,
    Precision,
    amp_settings,
    detect_device_props,
    precision_for,
)
from imgcls_pipeline.core.progress import progress as progress_bar

# Embeddings gathered on the device before one copy to host memory: few synchronisations,
# bounded device memory (65 536 × 512 floats = 128 MiB).
_FLUSH_ROWS = 65_536


class Interrupted(Exception):
    """``should_stop`` fired while embedding; the caller abandons the pass."""


def inference_precision(props: DeviceProps | None, trained_precision: object = None) -> Precision:
    """The precision to embed at on a device (``props``; None: no CUDA device).

    A model is embedded as it was validated while training: the precision its checkpoint records
    (``hardware.precision``, the GPU table's or a ``use_bf16`` override) when there is one, else
    the table's for this device. bf16 recorded on an Ampere card cannot be honoured on an older
    one (no fast bf16), which then falls back to the table's fp16. The CPU always runs fp32.
    """
    if props is None:
        return "fp32"
    for precision in typing.get_args(Precision):
        if trained_precision == precision and (precision != "bf16" or props.is_ampere_or_newer):
            return precision
    return precision_for(props)


def inference_settings(
    device: torch.device, trained_precision: object = None
) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, channels_last) for inference on ``device``, the precision chosen by
    ``inference_precision``. channels_last speeds up convolutions on CUDA only."""
    if device.type != "cuda":
        return None, False
    index = torch.cuda.current_device() if device.index is None else device.index
    amp_dtype, _ = amp_settings(inference_precision(detect_device_props(index), trained_precision))
    return amp_dtype, True


def compute_embeddings(
    model: torch.nn.Module,
    loader: Iterable[tuple[torch.Tensor, Any]] | Iterable[torch.Tensor],
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
    flip_tta: bool = False,
    desc: str = "embedding",
) -> np.ndarray:
    """Embed every batch of ``loader`` (images, or (images, anything) pairs) with ``model``.

    Returns float32 (N, D), row i the i-th image, each row of unit L2 norm; an empty loader gives
    (0, ``model.embedding_dim``), or (0, 0) for a model without that attribute. The model runs in
    eval mode and is put back in its previous mode afterwards. ``channels_last`` only changes
    the inputs' layout; convert the model once with ``model.to(memory_format=...)`` to match.
    ``should_stop`` is polled before each batch; when it fires, ``Interrupted`` is raised.
    ``progress`` shows a bar (plain lines when not on a terminal) labelled ``desc``.

    ``flip_tta`` (horizontal-flip test-time augmentation): a row is the normalised sum of the
    embeddings of the image and of its mirror image, so a photo and its mirror get the same row.
    Product photos have no preferred left/right, and averaging the two views smooths out what
    one view alone gets wrong; it costs a second forward pass.
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype)
        if amp_dtype is not None and device.type == "cuda"
        else contextlib.nullcontext()
    )
    was_training = model.training
    model.eval()
    host: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []
    try:
        with torch.inference_mode(), autocast:
            for images in _images(progress_bar(loader, desc=desc, unit="batch", enabled=progress)):
                if should_stop is not None and should_stop():
                    raise Interrupted
                x = images.to(device, non_blocking=True, memory_format=memory_format)
                embedded = model(x).float()
                if flip_tta:
                    embedded = embedded + model(torch.flip(x, dims=(-1,))).float()
                # Normalise in float32: a bf16/fp16 norm is off by up to ~0.4 %.
                pending.append(F.normalize(embedded, dim=1))
                if sum(len(p) for p in pending) >= _FLUSH_ROWS:
                    host.append(torch.cat(pending).cpu())
                    pending.clear()
            if pending:
                host.append(torch.cat(pending).cpu())
    finally:
        model.train(was_training)
    if not host:
        return np.zeros((0, getattr(model, "embedding_dim", 0)), dtype=np.float32)
    return torch.cat(host).numpy()


def _images(batches: Iterable[Any]) -> Iterator[torch.Tensor]:
    for batch in batches:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch

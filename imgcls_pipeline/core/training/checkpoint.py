"""Checkpoint files: atomic writes, safe reads, resume compatibility, and ``metrics.csv``.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` can read: tensors, dicts,
lists, str, int, float, bool, None. Keys:

- ``format``: ``"imgcls_pipeline.checkpoint/1"``
- ``epoch``: epochs completed (1-based number of the last finished epoch); ``phase``, ``margin``
- ``model``, ``arcface``: fp32 state dicts; ``optimizer``, ``scheduler``, ``scaler``: state dicts
  (latest_model.pt only; best_model.pt is for inference and leaves them out)
- with ``ema_decay`` set, ``model`` holds the EMA of the weights (what validation measured and
  inference uses) and latest_model.pt adds ``trained_model``, the optimiser's own weights, which
  a resume continues from
- ``best_val_recall@1``, ``best_epoch``, ``epochs_without_improvement``, ``stopped_early``
- ``rng``: random states (python, numpy, torch, cuda) at the end of the epoch, see ``core.training.rng``
- ``config`` (``PipelineConfig.to_dict()``), ``classes``, ``splits_fingerprint``
- ``backbone``, ``embedding_dim``, ``mean``, ``std``, ``image_size``: what inference needs
- ``hardware``: the ``HardwareSettings`` dict of the run; ``history``: one dict per epoch
  (the rows of ``metrics.csv``)

``payload`` builds that dict and ``restore`` reads it back: the keys are written out here only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from pydantic import BaseModel

from imgcls_pipeline.core.atomic import is_orphan_temp_file, write_atomic, write_text_atomic
from imgcls_pipeline.core.data.split_files import split_path
from imgcls_pipeline.core.errors import UserError, describe
from imgcls_pipeline.core.settings import (
    EvaluationConfig,
    LifecycleSettings,
    PipelineConfig,
    effective_batchnorm_statistics,
)
from imgcls_pipeline.core.tables import read_table

FORMAT = "imgcls_pipeline.checkpoint/1"
LATEST = "latest_model.pt"
BEST = "best_model.pt"
METRICS = "metrics.csv"
RESUME_STATE_KEYS = ("optimizer", "scheduler", "scaler", "trained_model")


@dataclass
class RunState:
    """What a run carries from epoch to epoch, into a checkpoint and back out of it."""

    epoch: int = 0  # epochs completed
    best_recall: float = -1.0  # best val Recall@1 so far (-1: none yet)
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # the rows of metrics.csv


class Stateful(Protocol):
    """A module, optimiser, scheduler or grad scaler: what torch saves and loads as a dict."""

    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state_dict: Any, /) -> Any: ...


def payload(
    state: RunState,
    *,
    config: PipelineConfig,
    phase: str,
    margin: float,
    model: Stateful,
    arcface: Stateful,
    optimizer: Stateful,
    scheduler: Stateful,
    scaler: Stateful,
    mean: tuple[float, ...] | list[float],
    std: tuple[float, ...] | list[float],
    rng: dict[str, Any],
    classes: list[str],
    fingerprint: str,
    hardware: dict[str, Any],
    ema: Stateful | None = None,
) -> dict[str, Any]:
    """The checkpoint dict of the keys above, captured at the end of epoch ``state.epoch``.

    ``ema``: the averaged copy of ``model`` when ``ema_decay`` is set, else None.
    """
    trained = {} if ema is None else {"trained_model": _fp32_cpu(model.state_dict())}
    return {
        "format": FORMAT,
        "epoch": state.epoch,
        "phase": phase,
        "margin": margin,
        "model": _fp32_cpu((model if ema is None else ema).state_dict()),
        **trained,
        "arcface": _fp32_cpu(arcface.state_dict()),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "best_val_recall@1": state.best_recall,
        "best_epoch": state.best_epoch,
        "epochs_without_improvement": state.epochs_without_improvement,
        "stopped_early": state.stopped_early,
        "rng": rng,
        "config": config.to_dict(),
        "classes": list(classes),
        "splits_fingerprint": fingerprint,
        "backbone": config.model.backbone,
        "embedding_dim": config.model.embedding_dim,
        "mean": list(mean),
        "std": list(std),
        "image_size": config.data.image_size,
        "hardware": hardware,
        "history": [dict(row) for row in state.history],
    }


def inference_only(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint`` without the optimiser, scheduler and scaler states: best_model.pt."""
    return {k: v for k, v in checkpoint.items() if k not in RESUME_STATE_KEYS}


def restore(
    checkpoint: dict[str, Any],
    *,
    model: Stateful,
    arcface: Stateful,
    optimizer: Stateful,
    scheduler: Stateful,
    scaler: Stateful,
    ema: Stateful | None = None,
) -> RunState:
    """Load a latest_model.pt's weights and optimiser states in place; return the run's state.

    A checkpoint written without EMA starts a new ``ema`` from its weights; one written with EMA
    resumes without it from ``trained_model``.
    """
    trained = checkpoint.get("trained_model", checkpoint["model"])
    model.load_state_dict(trained)
    if ema is not None:
        ema.load_state_dict(checkpoint["model"])
    arcface.load_state_dict(checkpoint["arcface"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])
    return RunState(
        epoch=checkpoint["epoch"],
        best_recall=checkpoint["best_val_recall@1"],
        best_epoch=checkpoint["best_epoch"],
        epochs_without_improvement=checkpoint["epochs_without_improvement"],
        stopped_early=checkpoint["stopped_early"],
        history=list(checkpoint["history"]),
    )


def saved_rng_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The random states captured with the checkpoint, for ``rng.restore_rng_state``."""
    return checkpoint["rng"]


def _fp32_cpu(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    # Weights are fp32 already (autocast never changes them); this also makes a checkpoint written
    # on one GPU load anywhere.
    return {
        k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
        for k, v in state_dict.items()
    }


def splits_fingerprint(splits_dir: str | Path) -> str:
    """sha256 over the bytes of train.csv then val.csv: a resumed run must see the same splits."""
    digest = hashlib.sha256()
    for split in ("train", "val"):
        path = split_path(splits_dir, split)
        if not path.is_file():
            raise UserError(f"{path} is missing; create the splits first (the splits step).")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Atomic: a reader (or a resume after SIGKILL) sees the previous file or the complete new one."""
    import torch  # here, not at the top: the file names and metrics.csv need no torch

    write_atomic(path, lambda handle: torch.save(checkpoint, handle))


def remove_stale_temp_files(checkpoint_dir: Path) -> None:
    """Delete the temporary files of writes that a killed process never finished; only for the
    holder of the folder's lock (``core.locks``), which no live writer can share."""
    for name in (LATEST, BEST, METRICS):
        for leftover in checkpoint_dir.glob(f".{name}.*.tmp"):
            if is_orphan_temp_file(leftover.name, unnamed_too=True):
                leftover.unlink(missing_ok=True)


def check_best_checkpoint(checkpoint_dir: Path) -> str | None:
    """Make sure best_model.pt is readable wherever latest_model.pt says a best epoch exists.

    Unreadable (truncated, overwritten, deleted) but latest_model.pt is that very epoch: best is
    rebuilt from it, the same weights, and a note saying so is returned. Otherwise a UserError:
    the best weights are gone and only a new training can make them again.
    """
    latest_path, best_path = checkpoint_dir / LATEST, checkpoint_dir / BEST
    if not latest_path.is_file():
        return None
    try:
        read_checkpoint(best_path)
        return None
    except UserError:
        pass
    latest = read_checkpoint(latest_path)
    if latest["best_epoch"] is None:
        return None
    if latest["best_epoch"] == latest["epoch"]:
        save_checkpoint(best_path, inference_only(latest))
        return (
            f"{best_path} was unreadable; rebuilt it from {LATEST}, which holds the same "
            f"epoch {latest['epoch']}."
        )
    raise UserError(
        f"{best_path} is missing or unreadable (corrupt or truncated) and cannot be rebuilt, "
        f"since {LATEST} holds epoch {latest['epoch']} and the best was epoch "
        f"{latest['best_epoch']}; train again with --fresh (or restore {BEST} from a backup)."
    )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load one of our checkpoints on the CPU; anything else is a UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Checkpoint {path} does not exist; train first or pass an existing file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "unusual pickle protocol" on junk
            import torch

            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    # The weights-only unpickler runs no code, but on arbitrary bytes it can fail with almost any
    # exception (IndexError, KeyError, UnpicklingError, ...): all mean "not a checkpoint".
    except Exception as err:
        raise UserError(
            f"{path} is not a readable checkpoint (corrupt or another format: {describe(err)}); "
            f"pass a {BEST} or {LATEST} written by imgcls training."
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UserError(
            f"{path} is not an imgcls checkpoint (no format marker {FORMAT!r}); "
            f"pass a {BEST} or {LATEST} written by imgcls training."
        )
    return checkpoint


# Settings a resume may change. Each either only decides how far or how the run goes from here
# (epochs, patience), follows the machine the run continues on (workers, precision; a None there
# is resolved per GPU anyway), or is not read by training at all (split and search settings, whose
# effect on training is judged by the class list and the splits fingerprint below). Every other
# setting shaped the weights and optimiser state saved so far (a learning rate, for one, would be
# overwritten by the optimiser state loaded back), so a different value refuses.
RESUMABLE_CHANGES = frozenset(
    {
        "training.total_epochs",
        "training.early_stopping_patience",
        "training.fresh",
        "training.num_workers",
        "training.use_bf16",
        "training.compile",
        "data.min_image_size",
        "data.class_names",
        "data.train_ratio",
        "data.val_ratio",
        "data.test_ratio",
        "data.image_cache",  # cached and direct decoding give the same images within tolerance
        *(
            f"evaluation.{name}"
            for name in EvaluationConfig.model_fields
            # Validation computes these recalls; metrics.csv has one column for each.
            if name not in ("recall_k_values",)
        ),
        # When and whether a model is served or re-trained; init_from shaped the weights.
        *(f"lifecycle.{name}" for name in LifecycleSettings.model_fields if name != "init_from"),
    }
)


def check_resume_compatible(
    checkpoint: dict[str, Any],
    *,
    config: PipelineConfig,
    classes: list[str],
    fingerprint: str,
    path: Path,
) -> None:
    """Refuse to resume when a setting outside ``RESUMABLE_CHANGES``, the class list or the
    splits differ from the checkpoint's run, naming every difference."""
    # A key an older checkpoint lacks had the value that is today's default.
    saved = _effective(PipelineConfig.from_dict(_known(checkpoint["config"])))
    wanted = _effective(config)
    differences = [
        f"{key.split('.')[-1]} differs ({saved[key]!r} -> {wanted[key]!r})"
        for key in wanted
        if key not in RESUMABLE_CHANGES and saved.get(key) != wanted[key]
    ]
    if checkpoint["classes"] != classes:
        differences.append("the class list differs")
    if checkpoint["splits_fingerprint"] != fingerprint:
        differences.append("the splits (train.csv/val.csv) differ")
    if differences:
        raise UserError(
            f"Cannot resume from {path}, whose run had other settings: "
            f"{', '.join(differences)}; pass the same settings to continue it, or --fresh to "
            f"start over (or use another checkpoint folder)."
        )


def _effective(config: PipelineConfig) -> dict[str, Any]:
    """The flattened settings with "auto" values replaced by what they did in that run."""
    flat = _flatten(config.to_dict())
    flat["training.batchnorm_statistics"] = effective_batchnorm_statistics(
        config.training.batchnorm_statistics, config.model
    )
    return flat


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            flat[key] = value
    return flat


# Settings whose default changed after they were introduced: a checkpoint that lacks one was
# trained before it existed, with the behaviour written here, not with today's default.
# batchnorm_statistics: its default "auto" freezes pretrained statistics (issue 7's benchmark).
BEHAVIOUR_BEFORE_SETTING: dict[str, dict[str, Any]] = {
    "training": {"batchnorm_statistics": "frozen_in_warmup"},
}


def _known(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` without the settings this version no longer has (they cannot be passed again),
    plus ``BEHAVIOUR_BEFORE_SETTING`` where it predates a setting whose default changed."""
    raw = {
        key: {**BEHAVIOUR_BEFORE_SETTING.get(key, {}), **value}
        if isinstance(value, dict)
        else value
        for key, value in raw.items()
    }
    known: dict[str, Any] = {}
    for key, value in raw.items():
        field = PipelineConfig.model_fields.get(key)
        if field is None:
            continue
        section = field.annotation
        if isinstance(value, dict) and isinstance(section, type) and issubclass(section, BaseModel):
            value = {k: v for k, v in value.items() if k in section.model_fields}
        known[key] = value
    return known


def write_metrics_csv(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.csv`` from the epoch rows kept in the checkpoint (so never a duplicate)."""
    if not history:
        path.unlink(missing_ok=True)
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(path, text.getvalue())


def read_metrics(checkpoint_dir: str | Path) -> pd.DataFrame:
    """``metrics.csv`` of ``checkpoint_dir`` as numbers, one row per epoch (empty if none yet)."""
    path = Path(checkpoint_dir) / METRICS
    if not path.is_file():
        return pd.DataFrame()
    return read_table(
        path, ["epoch"], dtype=None, remedy="train again (it is rewritten from latest_model.pt)"
    )

"""The promotion gate (champion / challenger): a new model is served only if it is at least as
good as the served one on the same queries.

Both models are scored on the *current* val split as queries, each against its own embedding of
the current train split as the gallery (plain nearest-neighbour search, no re-ranking, for both
alike). The challenger is served when its Recall@1 is at least ``min_val_recall_at_1`` (the
floor) and at least the champion's minus ``promotion_tolerance``; the first model only needs the
floor. Every decision is a row of ``models/decisions.csv``:
time, kind (gate | manual), challenger, champion, challenger_recall_at_1, champion_recall_at_1,
difference, tolerance, floor, promoted, reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from imgcls_pipeline.core.atomic import write_text_atomic
from imgcls_pipeline.core.lifecycle.bundle_files import (
    Bundle,
    served_bundle,
    splits_fingerprint,
)
from imgcls_pipeline.core.lifecycle.bundles import build_bundle, find_bundle
from imgcls_pipeline.core.lifecycle.registry import LOCK_PURPOSE, ModelVersion, read_version
from imgcls_pipeline.core.lifecycle.serving import discard_bundle, serve
from imgcls_pipeline.core.locks import FolderLock
from imgcls_pipeline.core.settings import EvaluationConfig, LifecycleSettings

if TYPE_CHECKING:
    from imgcls_pipeline.core.data.image_cache import CacheMode

DECISIONS = "decisions.csv"
DECISION_COLUMNS = (
    "time",
    "kind",
    "challenger",
    "champion",
    "challenger_recall_at_1",
    "champion_recall_at_1",
    "difference",
    "tolerance",
    "floor",
    "promoted",
    "reason",
)
# Recall@1 is a ratio of counts: an edge case (challenger exactly champion − tolerance) must not
# be lost to float rounding of the subtraction.
_EPSILON = 1e-9


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    challenger: str
    champion: str | None
    challenger_recall_at_1: float
    champion_recall_at_1: float | None
    difference: float | None  # challenger − champion
    tolerance: float
    floor: float
    reason: str  # one sentence
    kind: str = "gate"  # "gate", or "manual" for `imgcls promote`


def decide(
    challenger_r1: float,
    champion_r1: float | None,
    *,
    challenger: str,
    champion: str | None,
    tolerance: float,
    floor: float,
) -> GateDecision:
    difference = None if champion_r1 is None else challenger_r1 - champion_r1
    stays = f"{champion} stays served" if champion else "nothing is served"
    if challenger_r1 + _EPSILON < floor:
        promote = False
        reason = (
            f"{challenger}'s val Recall@1 {challenger_r1:.4f} is below the floor "
            f"min_val_recall_at_1 {floor:g}; {stays}."
        )
    elif champion is None or champion_r1 is None:
        promote = True
        reason = (
            f"{challenger} is the first model and its val Recall@1 {challenger_r1:.4f} passes "
            f"the floor {floor:g}."
        )
    elif challenger_r1 + _EPSILON >= champion_r1 - tolerance:
        promote = True
        reason = (
            f"{challenger}'s val Recall@1 {challenger_r1:.4f} is at least {champion}'s "
            f"{champion_r1:.4f} minus the tolerance {tolerance:g}; {challenger} is served."
        )
    else:
        promote = False
        reason = (
            f"{challenger}'s val Recall@1 {challenger_r1:.4f} is below {champion}'s "
            f"{champion_r1:.4f} minus the tolerance {tolerance:g}; {stays}."
        )
    return GateDecision(
        promote,
        challenger,
        champion,
        challenger_r1,
        champion_r1,
        difference,
        tolerance,
        floor,
        reason,
    )


def val_recall_at_1(bundle: Bundle, splits_dir: Path) -> float:
    """The current val split as queries against the bundle's own train gallery: Recall@1."""
    from imgcls_pipeline.core.data.split_files import read_split
    from imgcls_pipeline.core.errors import UserError
    from imgcls_pipeline.core.search import embeddings_store
    from imgcls_pipeline.core.search.index import load_index, search
    from imgcls_pipeline.core.search.metrics import encode_labels, neighbour_codes, recall_at_k

    if bundle.splits_fingerprint != splits_fingerprint(splits_dir):
        raise UserError(
            f"The bundle {bundle.folder} was built from other split tables than those in "
            f"{splits_dir}; build it again for the current splits."
        )
    queries = read_split(splits_dir, "val")
    if queries.empty:
        raise UserError(
            f"The val split in {splits_dir} has no rows, so models cannot be compared; run "
            "`imgcls split` with val_ratio above 0."
        )
    vectors = embeddings_store.read_embeddings(
        bundle.part(embeddings_store.FOLDER), "val", rows=len(queries)
    )
    index, gallery = load_index(bundle.part("index"))
    _, indices = search(index, vectors, 1)
    labels = gallery["class_name"].tolist()
    classes = sorted(set(labels) | set(queries["class_name"]))
    neighbours = neighbour_codes(indices, encode_labels(labels, classes))
    return recall_at_k(encode_labels(queries["class_name"].tolist(), classes), neighbours, [1])[1]


def record_decision(models_dir: Path, decision: GateDecision) -> None:
    """Append ``decision`` to ``models/decisions.csv`` (rewritten atomically, under the models
    folder's lock)."""
    path = Path(models_dir) / DECISIONS
    row = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        **{k: _text(v) for k, v in asdict(decision).items() if k != "promote"},
        "promoted": str(decision.promote).lower(),
    }
    with FolderLock(models_dir, LOCK_PURPOSE):
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        out = io.StringIO()
        writer = csv.DictWriter(out, DECISION_COLUMNS, lineterminator="\n")
        if not text:
            writer.writeheader()
        writer.writerow({c: row[c] for c in DECISION_COLUMNS})
        write_text_atomic(path, text + out.getvalue())


def read_decisions(models_dir: Path) -> list[dict[str, str]]:
    """The rows of ``decisions.csv``, oldest first (none when there is no file)."""
    path = Path(models_dir) / DECISIONS
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _text(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def run_gate(
    version: ModelVersion,
    artifacts: Path,
    models_dir: Path,
    data_dir: Path,
    splits_dir: Path,
    *,
    evaluation: EvaluationConfig,
    lifecycle: LifecycleSettings,
    batch_size: int | None = None,
    num_workers: int = 0,
    manual: bool = False,
    progress: bool = False,
    figures: bool = False,
    image_cache: CacheMode = "auto",
    log: Callable[[str], None] = print,
) -> GateDecision:
    """Build ``version``'s bundle for the current splits, score it and the served model on the
    same queries, decide, record, and serve the challenger when it is promoted. ``manual``
    (``imgcls promote``): no comparison, a forced and recorded switch, reusing a bundle of the
    version that matches the current splits and settings when there is one. ``figures`` draws
    the evaluation's HTML report and PNGs into the bundle. The caller holds the artifacts
    folder's lock (and not the models folder's, which recording the decision takes)."""
    build = {
        "flip_tta": evaluation.flip_tta,
        "index_type": evaluation.index_type,
        "batch_size": batch_size or evaluation.embedding_batch_size,
        "num_workers": num_workers,
        "progress": progress,
        "log": log,
        "evaluation": evaluation,
        "figures": figures,
        "image_cache": image_cache,
    }
    current = splits_fingerprint(splits_dir)
    served = served_bundle(artifacts)
    same = {"flip_tta": evaluation.flip_tta, "index_type": evaluation.index_type}
    challenger = find_bundle(artifacts, version, current, **same) if manual else None
    if challenger is None:
        challenger = build_bundle(artifacts, version, data_dir, splits_dir, **build)
    challenger_r1 = val_recall_at_1(challenger, splits_dir)
    log(f"{version.version} (challenger): val Recall@1 {challenger_r1:.4f}")
    champion, champion_r1, staged = None, None, None
    if served is not None:
        champion = served.model_version
        champion_bundle = served
        if not _is_current(served, current, same):
            # The champion is scored on the same queries as the challenger: rebuilt for them.
            staged = build_bundle(
                artifacts, read_version(models_dir, champion), data_dir, splits_dir, **build
            )
            champion_bundle = staged
        champion_r1 = val_recall_at_1(champion_bundle, splits_dir)
        log(f"{champion} (served): val Recall@1 {champion_r1:.4f}")
    floor = evaluation.min_val_recall_at_1
    if manual:
        decision = GateDecision(
            promote=True,
            challenger=version.version,
            champion=champion,
            challenger_recall_at_1=challenger_r1,
            champion_recall_at_1=champion_r1,
            difference=None if champion_r1 is None else challenger_r1 - champion_r1,
            tolerance=lifecycle.promotion_tolerance,
            floor=floor,
            reason=f"{version.version} was served by hand (imgcls promote), without the gate.",
            kind="manual",
        )
    else:
        decision = decide(
            challenger_r1,
            champion_r1,
            challenger=version.version,
            champion=champion,
            tolerance=lifecycle.promotion_tolerance,
            floor=floor,
        )
    if staged is not None:
        discard_bundle(staged.folder)
    if decision.promote:
        serve(artifacts, challenger, log=log)
    elif challenger != served:
        discard_bundle(challenger.folder)
    record_decision(models_dir, decision)
    return decision


def _is_current(bundle: Bundle, fingerprint: str, same: dict[str, object]) -> bool:
    return bundle.splits_fingerprint == fingerprint and all(
        getattr(bundle, name) == value for name, value in same.items()
    )

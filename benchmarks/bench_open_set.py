"""``imgcls predict --open_set_threshold``: how many photos of classes the gallery never saw are
answered "unknown", and how many photos of known classes keep an answer, by threshold.

Data: Fashion-MNIST (Debian's package, see ``quality_data.py``). The model is trained and indexed
on six classes (``KNOWN``); the other four (``HELD_OUT``: pullover, coat, shirt, ankle boot —
close cousins of the known tops and shoes, the hard case) are only ever queried. Known-class
queries are the test split (IDs no training saw). Both sets go through ``imgcls predict`` once
without a threshold (its JSON gives every photo's nearest similarity) and once per threshold, and
the fractions are read from the command's own answers.

    nice -n 10 uv run python benchmarks/bench_open_set.py   # ~5 min on two CPU cores

Writes ``bench_out/open_set/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import quality_data  # beside this file: the script's folder is on sys.path

KNOWN = ("tshirt_top", "trouser", "dress", "sandal", "sneaker", "bag")
HELD_OUT = ("pullover", "coat", "shirt", "ankle_boot")


def imgcls(*arguments: str, env: dict[str, str]) -> str:
    command = [str(Path(sys.executable).with_name("imgcls")), *arguments]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        sys.exit(f"error: {shlex.join(command)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def predictions(paths: list[str], out: Path, folders: list[str], env, *extra: str) -> list[dict]:
    imgcls("predict", *folders, "--output", str(out), *extra, *paths, env=env)
    return json.loads(out.read_text(encoding="utf-8"))


def train_and_index(args: argparse.Namespace, work: Path, folders: list[str], env) -> None:
    images, labels = quality_data.read_fashion_mnist()
    picked = quality_data.pick_per_class(labels, args.per_class)
    names = np.array(quality_data.CLASS_NAMES)[labels[picked]]
    known, held = picked[np.isin(names, KNOWN)], picked[np.isin(names, HELD_OUT)]
    quality_data.write_photos(work / "data", images[known], labels[known], args.size)
    quality_data.write_photos(work / "unknown", images[held], labels[held], args.size)
    weights = quality_data.convert_lite0_weights(work / "tf_efficientnet_lite0.pth")
    imgcls("split", *folders, "--min_image_size", str(args.size), env=env)
    imgcls(
        "train",
        *folders,
        "--backbone",
        quality_data.TIMM_NAME,
        "--pretrained_path",
        str(weights),
        "--image_size",
        str(args.size),
        "--total_epochs",
        str(args.epochs),
        "--warmup_epochs",
        "1",
        "--fresh",
        env=env,
    )
    imgcls("index", *folders, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per_class", type=int, default=60)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--thresholds", default="0.7,0.75,0.8")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the model and index of an earlier run"
    )
    parser.add_argument("--out_dir", type=Path, default=Path("bench_out/open_set"))
    args = parser.parse_args()
    work = args.out_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DAGSTER_HOME": str(work / "dagster"), "CUDA_VISIBLE_DEVICES": ""}
    (work / "dagster").mkdir(exist_ok=True)

    data, unknown = work / "data", work / "unknown"
    folders = ["--data_dir", str(data), "--splits_dir", str(work / "splits")]
    folders += ["--checkpoint_dir", str(work / "checkpoints")]
    folders += ["--artifacts_dir", str(work / "artifacts")]
    if not (args.reuse and (work / "artifacts" / "index").is_dir()):
        train_and_index(args, work, folders, env)

    test = pd.read_csv(work / "splits" / "test.csv", dtype=str)
    known_paths = [str(data / p) for p in test["image_path"]]
    predict_folders = folders[4:]  # checkpoint and artifacts folders
    plain_known = predictions(known_paths, work / "known.json", predict_folders, env)
    plain_unknown = predictions([str(unknown)], work / "unknown.json", predict_folders, env)
    true_known = test["class_name"].tolist()

    lines = [
        f"Fashion-MNIST, {args.size} px, `tf_efficientnet_lite0` (ImageNet weights), "
        f"{args.epochs} epochs; gallery: train split of {len(KNOWN)} classes; "
        f"{len(known_paths)} known-class test photos, {len(plain_unknown)} held-out photos "
        f"({', '.join(HELD_OUT)}).",
        "",
        "| `--open_set_threshold` | held-out photos answered `unknown` | known photos kept "
        "| accuracy of kept known photos |",
        "|---|---|---|---|",
    ]
    accuracy = np.mean(
        [p["predicted_class"] == t for p, t in zip(plain_known, true_known, strict=True)]
    )
    lines.append(f"| off | 0% | 100% | {accuracy:.1%} |")
    for text in args.thresholds.split(","):
        extra = ("--open_set_threshold", text)
        found_known = predictions(known_paths, work / "k.json", predict_folders, env, *extra)
        found_unknown = predictions([str(unknown)], work / "u.json", predict_folders, env, *extra)
        rejected = np.mean([p["predicted_class"] == "unknown" for p in found_unknown])
        kept = [
            (p, t)
            for p, t in zip(found_known, true_known, strict=True)
            if p["predicted_class"] != "unknown"
        ]
        kept_accuracy = np.mean([p["predicted_class"] == t for p, t in kept]) if kept else 0.0
        lines.append(
            f"| {text} | {rejected:.1%} | {len(kept) / len(found_known):.1%} "
            f"| {kept_accuracy:.1%} |"
        )
    nearest = [p["neighbours"][0]["similarity"] for p in plain_known]
    far = [p["neighbours"][0]["similarity"] for p in plain_unknown]
    lines += [
        "",
        f"Nearest-neighbour similarity, median (10th–90th percentile): known "
        f"{np.median(nearest):.3f} ({np.percentile(nearest, 10):.3f}–"
        f"{np.percentile(nearest, 90):.3f}), held-out {np.median(far):.3f} "
        f"({np.percentile(far, 10):.3f}–{np.percentile(far, 90):.3f}).",
    ]
    (work / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

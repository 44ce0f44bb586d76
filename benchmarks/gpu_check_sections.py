"""The measurements of ``gpu_check.py``, one function per section, each returning a JSON-ready dict.

They run in gpu_check's worker process (the one that imports torch); ``gpu_check.py`` decides
which run, boxes each in time and writes the results. ``Plan`` holds the sizes: the full check
(V2-L at 480 px, BF16 where the table says so) or ``--tiny`` (a tiny backbone at 64 px on the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from bench_embedding import bare_loop
from bench_train_step import NUM_CLASSES, bare, ours, timed
from PIL import Image

from imgcls_pipeline.core.data.dataset import ImageDataset, make_loader
from imgcls_pipeline.core.data.transforms import train_transform
from imgcls_pipeline.core.hardware import (
    amp_settings,
    detect_device_props,
    loader_settings,
    resolve_hardware,
)
from imgcls_pipeline.core.search.embedding import compute_embeddings
from imgcls_pipeline.core.settings import AugmentationConfig, ModelConfig, TrainingConfig
from imgcls_pipeline.core.training.loop import exact_recall_at_k
from imgcls_pipeline.core.training.model import build_embedding_model


@dataclass(frozen=True)
class Plan:
    backbone: str
    size: int
    batch: int
    steps: int  # timed steps per round
    rounds: int
    compile_backend: str
    photo_size: tuple[int, int]  # the data path's source photos (width, height)
    photos: int  # distinct photos written
    photo_rows: int  # rows the data path loads (photos repeated)
    parity_classes: int
    parity_per_class: int
    scaling_processes: int  # 0: as many as there are GPUs

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        raw["photo_size"] = tuple(raw["photo_size"])
        return cls(**raw)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


FULL = Plan(
    backbone="tf_efficientnetv2_l",
    size=480,
    batch=32,
    steps=10,
    rounds=3,
    compile_backend="inductor",
    photo_size=(4000, 3000),  # 12 MP, a phone photo
    photos=16,
    photo_rows=512,
    parity_classes=20,
    parity_per_class=6,
    scaling_processes=0,
)
# inductor's CPU code generation takes minutes even for a tiny network: the tiny check compiles
# with dynamo's "eager" backend, which still traces and runs the graph through torch.compile.
TINY = Plan(
    backbone="test_efficientnet",
    size=64,
    batch=8,
    steps=2,
    rounds=1,
    compile_backend="eager",
    photo_size=(320, 240),
    photos=4,
    photo_rows=16,
    parity_classes=4,
    parity_per_class=4,
    scaling_processes=0,
)


def _hardware():
    return resolve_hardware(detect_device_props(), os.cpu_count() or 1)


def _device_and_format(hardware) -> tuple[torch.device, torch.memory_format]:
    device = torch.device(hardware.device)
    memory_format = torch.channels_last if hardware.channels_last else torch.preserve_format
    return device, memory_format


# --- devices ---


def devices(plan: Plan) -> dict[str, Any]:
    """The cards, the versions and the settings our table resolves for this machine."""
    hardware = _hardware()
    cards = [
        {
            "index": i,
            "name": props.name,
            "memory_gb": round(props.total_memory / 1024**3, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
        }
        for i, props in (
            (i, torch.cuda.get_device_properties(i)) for i in range(torch.cuda.device_count())
        )
    ]
    return {
        "cards": cards,
        "nvidia_smi": _nvidia_smi(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "hardware": hardware.to_dict(),
        "loader": asdict(loader_settings(hardware)),
        "compile_setting_default": TrainingConfig().compile,
        "plan": asdict(plan),
    }


def _nvidia_smi() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    query = "--query-gpu=name,memory.total,driver_version,pcie.link.gen.current,power.limit"
    try:
        done = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as err:
        return f"failed: {err}"
    return done.stdout.strip() or done.stderr.strip()


# --- training step: ours against a bare timm loop ---


def train_step(plan: Plan, backend: str | None, which: tuple[str, ...]) -> dict[str, Any]:
    """Images/s of our training step and/or the bare loop, eager or compiled with ``backend``.

    Synthetic batches already on the device: this is the step alone, not the data path.
    """
    hardware = _hardware()
    device, memory_format = _device_and_format(hardware)
    args = argparse.Namespace(backbone=plan.backbone)
    makers = {"ours": ours, "bare": bare}
    torch.manual_seed(0)
    images = torch.randn(plan.batch, 3, plan.size, plan.size, device=device)
    images = images.contiguous(memory_format=memory_format)
    labels = torch.arange(plan.batch, device=device) % NUM_CLASSES
    batches = [(images, labels)] * plan.steps
    result: dict[str, Any] = {
        "backbone": plan.backbone,
        "image_size": plan.size,
        "batch": plan.batch,
        "precision": hardware.precision,
        "channels_last": hardware.channels_last,
        "compile_backend": backend,
    }
    runners = {}
    for name in which:
        started = time.perf_counter()
        run = makers[name](args, device, hardware.precision, memory_format, backend)
        run([(images, labels)] * 3)  # warm-up: compiles, cudnn autotuning, allocator
        _sync(device)
        result[f"{name}_warmup_seconds"] = round(time.perf_counter() - started, 1)
        runners[name] = run
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_number in range(plan.rounds):
        order = list(runners) if round_number % 2 == 0 else list(reversed(runners))
        for name in order:
            times[name].append(timed(runners[name], batches, device))
    for name, seconds in times.items():
        result[f"{name}_images_per_second"] = round(
            plan.batch * plan.steps / statistics.median(seconds), 2
        )
    if device.type == "cuda":
        result["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1024**3, 1)
    if len(runners) == 2:
        result["ratio_ours_to_bare"] = round(
            result["ours_images_per_second"] / result["bare_images_per_second"], 3
        )
    return result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- embedding ---


def embedding(plan: Plan) -> dict[str, Any]:
    """Images/s of ``compute_embeddings`` (our embedding pass) and a bare ``model(x)`` loop."""
    hardware = _hardware()
    device, memory_format = _device_and_format(hardware)
    amp_dtype, _ = amp_settings(hardware.precision)
    model = build_embedding_model(ModelConfig(backbone=plan.backbone, pretrained=False))
    model = model.to(device, memory_format=memory_format).eval()
    generator = torch.Generator().manual_seed(0)
    batch = plan.batch * 2  # no gradients: inference takes larger batches
    batches = [
        torch.rand(batch, 3, plan.size, plan.size, generator=generator)
        for _ in range(max(plan.steps, 2))
    ]
    n = batch * len(batches)

    def ours_pass() -> None:
        compute_embeddings(
            model, batches, device, amp_dtype=amp_dtype, channels_last=hardware.channels_last
        )

    def bare_pass() -> None:
        bare_loop(model, batches, device, amp_dtype, hardware.channels_last)

    ours_pass()  # warm-up
    bare_pass()
    ours_s = min(_seconds(ours_pass) for _ in range(plan.rounds))
    bare_s = min(_seconds(bare_pass) for _ in range(plan.rounds))
    return {
        "batch": batch,
        "images": n,
        "precision": hardware.precision,
        "ours_images_per_second": round(n / ours_s, 2),
        "bare_images_per_second": round(n / bare_s, 2),
        "ratio_ours_to_bare": round(bare_s / ours_s, 3),
    }


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


# --- data path ---


def data_path(plan: Plan) -> dict[str, Any]:
    """Images/s from photo files to training tensors: ImageDataset + the training transform in
    the DataLoader the loop makes (its workers, prefetching and pinned memory)."""
    hardware = _hardware()
    loading = loader_settings(hardware)
    folder = Path(tempfile.mkdtemp(prefix="gpu_check_photos_"))
    try:
        started = time.perf_counter()
        names = _write_photos(folder, plan, max(1, hardware.num_workers))
        written_s = time.perf_counter() - started
        frame = pd.DataFrame(
            {
                "image_path": [names[i % len(names)] for i in range(plan.photo_rows)],
                "class_name": ["a"] * plan.photo_rows,
                "object_id": [str(i) for i in range(plan.photo_rows)],
            }
        )
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        transform = train_transform(AugmentationConfig(), plan.size, mean, std, "bicubic")
        dataset = ImageDataset(frame, folder, ["a"], transform, plan.size)
        loader = make_loader(
            dataset,
            num_workers=hardware.num_workers,
            pin_memory=loading.pin_memory,
            batch_size=plan.batch,
            prefetch_factor=loading.prefetch_factor,
            persistent_workers=loading.persistent_workers,
        )
        iterator = iter(loader)
        next(iterator)  # the workers start and decode their first batches
        start, images = time.perf_counter(), 0
        for batch_images, _, _ in iterator:
            images += len(batch_images)
        seconds = time.perf_counter() - start
        rate = images / max(seconds, 1e-9)
        return {
            "source_photo": f"{plan.photo_size[0]}x{plan.photo_size[1]} JPEG q90",
            "distinct_photos": len(names),
            "images_timed": images,
            "image_size": plan.size,
            "num_workers": hardware.num_workers,
            "loader": asdict(loading),
            "images_per_second": round(rate, 2),
            "images_per_second_per_worker": round(rate / max(hardware.num_workers, 1), 2),
            "photo_writing_seconds": round(written_s, 1),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_photos(folder: Path, plan: Plan, processes: int) -> list[str]:
    names = [f"photo_{i:03d}.jpg" for i in range(plan.photos)]
    jobs = [(str(folder / name), plan.photo_size, i) for i, name in enumerate(names)]
    # A 12 MP photo takes about 0.6 GB of numpy intermediates: at most 8 at once.
    with ProcessPoolExecutor(max_workers=min(processes, len(jobs), 8)) as pool:
        list(pool.map(_write_photo, jobs))
    return names


def _write_photo(job: tuple[str, tuple[int, int], int]) -> None:
    """A photo-like JPEG: smooth colour gradients with fine noise (which is what makes a phone
    photo slow to decode; a flat image would decode unrealistically fast)."""
    path, (width, height), seed = job
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [
        127
        + 100
        * np.sin(x / width * rng.uniform(2, 8) + rng.uniform(0, 6))
        * np.cos(y / height * rng.uniform(2, 8))
        for _ in range(3)
    ]
    image = np.stack(channels, axis=-1) + rng.normal(0, 12, (height, width, 3))
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)


# --- Recall@1 parity, FP32 against BF16 ---


def recall_parity(plan: Plan) -> dict[str, Any]:
    """Recall@1 of the same images embedded in fp32 and in bf16 autocast, on a synthetic set of
    classes (each a smooth random pattern; its photos shifted, rescaled in brightness and noisy).

    The backbone is untrained (no download): BatchNorm statistics are first estimated on the set
    so activations have realistic scales; parity depends on the numerics, not on the weights."""
    hardware = _hardware()
    device, memory_format = _device_and_format(hardware)
    images, labels = _parity_set(plan)
    model = build_embedding_model(ModelConfig(backbone=plan.backbone, pretrained=False))
    model = model.to(device, memory_format=memory_format)
    batches = list(torch.split(images, plan.batch))
    model.train()
    with torch.no_grad():  # BatchNorm running statistics from the set itself
        for _ in range(2):
            for batch in batches:
                model(batch.to(device, memory_format=memory_format))
    model.eval()
    fp32 = _embed(model, batches, device, memory_format, None)
    bf16 = _embed(model, batches, device, memory_format, torch.bfloat16)
    queries = np.arange(len(labels)) % plan.parity_per_class == 0  # one query per class
    recalls = {}
    for name, emb in (("fp32", fp32), ("bf16", bf16)):
        recalls[name] = exact_recall_at_k(
            emb[queries], labels[queries], emb[~queries], labels[~queries], [1]
        )[1]
    cosine = (fp32 * bf16).sum(axis=1)
    return {
        "images": len(labels),
        "classes": plan.parity_classes,
        "recall_at_1_fp32": round(recalls["fp32"], 4),
        "recall_at_1_bf16": round(recalls["bf16"], 4),
        "recall_at_1_difference": round(abs(recalls["fp32"] - recalls["bf16"]), 4),
        "cosine_fp32_bf16_min": round(float(cosine.min()), 5),
        "cosine_fp32_bf16_mean": round(float(cosine.mean()), 5),
    }


def _parity_set(plan: Plan) -> tuple[torch.Tensor, np.ndarray]:
    generator = torch.Generator().manual_seed(0)
    size = plan.size
    patterns = F.interpolate(
        torch.rand(plan.parity_classes, 3, 8, 8, generator=generator),
        size=(size + 16, size + 16),
        mode="bicubic",
        align_corners=False,
    )
    images, labels = [], []
    for label, pattern in enumerate(patterns):
        for _ in range(plan.parity_per_class):
            dx, dy = torch.randint(0, 17, (2,), generator=generator).tolist()
            crop = pattern[:, dy : dy + size, dx : dx + size]
            brightness = 0.8 + 0.4 * torch.rand((), generator=generator)
            noise = 0.05 * torch.randn(crop.shape, generator=generator)
            images.append((crop * brightness + noise - 0.5) / 0.25)
            labels.append(label)
    return torch.stack(images), np.asarray(labels)


def _embed(model, batches, device, memory_format, dtype) -> np.ndarray:
    rows = []
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
    ):
        for batch in batches:
            out = model(batch.to(device, memory_format=memory_format)).float()
            rows.append(F.normalize(out, dim=1).cpu())
    return torch.cat(rows).numpy()


# --- scaling over several GPUs ---


def scaling(plan: Plan, seconds_left: float) -> dict[str, Any]:
    """Our training step under DDP on N processes (torchrun, one per GPU), whole-group images/s.

    Compared with one process by gpu_check's summary (``train_eager``'s figure for ours)."""
    processes = plan.scaling_processes or torch.cuda.device_count()
    if processes < 2:
        return {"skipped": "one GPU: nothing to scale over"}
    out = Path(tempfile.mkdtemp(prefix="gpu_check_scaling_")) / "result.json"
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [
        str(torchrun), "--standalone", "--nproc_per_node", str(processes),
        str(Path(__file__).with_name("gpu_check_ddp.py")), "--plan-json", plan.to_json(),
        "--output", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=max(seconds_left - 5, 10)
    )
    if done.returncode != 0:
        raise RuntimeError(f"torchrun exited {done.returncode}: {done.stderr[-1500:]}")
    return {"processes": processes, **json.loads(out.read_text())}

"""A prepared check for a machine with NVIDIA GPUs: one JSON of speeds and settings, in minutes.

    uv sync --locked && uv run python benchmarks/gpu_check.py [--output gpu_check.json]
    uv run python benchmarks/gpu_check.py --tiny      # the same sections on the CPU, in seconds

Sections (each its own entry in the JSON, with its seconds and its result or its error):
- devices: the cards (torch and nvidia-smi), versions, and the settings our table resolves
  (precision, workers, accumulation, DataLoader settings, compile default).
- train_eager / train_compiled_ours / train_compiled_bare: training-step images/s of
  tf_efficientnetv2_l at 480 px (precision per the table: BF16 on Ampere and newer,
  channels_last) for our loop's step (``train_epoch`` over ArcFaceNet) and a bare timm +
  PyTorch loop, eager and torch.compile'd; the summary gives the ratios (goal ≥ 0.95).
- embedding: images/s of our embedding pass against a bare ``model(x)`` loop.
- recall_parity: Recall@1 of FP32 against BF16 embeddings of a small synthetic set.
- data_path: images/s from 12 MP JPEGs to 480 px training tensors through the training
  DataLoader with the table's N workers.
- scaling (several GPUs): our step under DDP on all GPUs (torchrun), against one GPU.

Each section runs in a worker process and has its own time box; one that fails, hangs or crashes
costs only itself: the worker is stopped and a new one runs the rest. The whole check stays within
``--budget`` seconds (default 450: under 8 minutes with start-up), skipping what no longer fits.
The JSON is rewritten after every section, so even an interrupted check leaves its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MARK = "@@gpu_check "  # prefix of the worker's event lines on stdout
WORKER_START_SECONDS = 180  # imports and CUDA start-up before the first section

# Time box of each section (seconds), in the order they run: the cheap, always-useful figures
# first; the compiles (minutes for V2-L) last, where the budget cuts what no longer fits.
BOXES: dict[str, float] = {
    "devices": 60,
    "train_eager": 150,
    "embedding": 90,
    "recall_parity": 90,
    "data_path": 120,
    "scaling": 180,
    "train_compiled_ours": 240,
    "train_compiled_bare": 200,
}


@dataclass
class Check:
    """The JSON being filled in."""

    output: Path
    tiny: bool
    budget: float
    started: float = field(default_factory=time.monotonic)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def seconds_left(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def record(self, name: str, entry: dict[str, Any]) -> None:
        self.sections[name] = entry
        self.write()

    def write(self) -> None:
        document = {
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "tiny": self.tiny,
            "seconds": round(time.monotonic() - self.started, 1),
            "summary": self.summary,
            "sections": self.sections,
        }
        self.output.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.output.with_name(f".{self.output.name}.tmp")
        temporary.write_text(json.dumps(document, indent=2))
        os.replace(temporary, self.output)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.worker:
        return _worker(args)
    check = Check(Path(args.output), args.tiny, args.budget)
    names = [name for name in BOXES if not args.sections or name in args.sections]
    boxes = {**BOXES, **dict(args.box or [])}
    pending = list(names)
    while pending:
        if check.seconds_left() < 5:
            for name in pending:
                check.record(name, {"skipped": "the time budget was spent"})
            break
        pending = _run_worker(check, pending, boxes, args)
    check.summary = summarise(check.sections)
    check.write()
    print(json.dumps(check.summary, indent=2))
    print(f"Written: {check.output}")
    return 0


def _run_worker(
    check: Check, pending: list[str], boxes: dict[str, float], args: argparse.Namespace
) -> list[str]:
    """Run ``pending`` sections in one worker; return those still to run after it ended."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", ",".join(pending)]
    if args.tiny:
        command.append("--tiny")
    if args.stall:
        command += ["--stall", args.stall]
    if args.scaling_processes:
        command += ["--scaling-processes", str(args.scaling_processes)]
    worker = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, start_new_session=True, bufsize=1
    )
    events = _events(worker)
    current, deadline = None, time.monotonic() + min(WORKER_START_SECONDS, check.seconds_left())
    section_started = time.monotonic()
    try:
        while True:
            try:
                event = events.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                name = current or pending[0]
                what = f"ran past its {boxes[name]:.0f} s box" if current else "never started"
                check.record(
                    name,
                    {
                        "seconds": round(time.monotonic() - section_started, 1),
                        "error": f"{what}; the worker was stopped",
                    },
                )
                print(f"{name}: {what}", flush=True)
                return [n for n in pending if n != name and n not in check.sections]
            if event is None:  # the worker ended
                if current is not None:
                    check.record(current, {"error": f"the worker died (exit {worker.wait()})"})
                return [n for n in pending if n not in check.sections]
            if event["event"] == "start":
                current, section_started = event["section"], time.monotonic()
                deadline = section_started + min(boxes[current], check.seconds_left())
                continue
            entry = {"seconds": round(time.monotonic() - section_started, 1)}
            entry.update({k: v for k, v in event.items() if k in ("result", "error")})
            check.record(event["section"], entry)
            print(f"{event['section']}: {'error' if 'error' in event else 'done'}", flush=True)
            current, deadline = None, time.monotonic() + 60  # until the next "start"
    finally:
        _stop(worker)


def _events(worker: subprocess.Popen) -> queue.Queue:
    """The worker's event lines as dicts, then None when its stdout closes."""
    found: queue.Queue = queue.Queue()

    def read() -> None:
        for line in worker.stdout:
            if line.startswith(MARK):
                found.put(json.loads(line[len(MARK) :]))
            else:
                sys.stdout.write(line)
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    return found


def _stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)  # its torchrun children too
    worker.wait()


def summarise(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The headline figures, from whichever sections finished."""
    result = {name: entry.get("result", {}) for name, entry in sections.items()}
    eager = result.get("train_eager", {})
    ours_compiled = result.get("train_compiled_ours", {}).get("ours_images_per_second")
    bare_compiled = result.get("train_compiled_bare", {}).get("bare_images_per_second")
    summary: dict[str, Any] = {
        "devices": [card["name"] for card in result.get("devices", {}).get("cards", [])],
        "train_images_per_second_ours_eager": eager.get("ours_images_per_second"),
        "train_images_per_second_bare_eager": eager.get("bare_images_per_second"),
        "train_ratio_ours_to_bare_eager": eager.get("ratio_ours_to_bare"),
        "train_images_per_second_ours_compiled": ours_compiled,
        "train_images_per_second_bare_compiled": bare_compiled,
        "embedding_images_per_second": result.get("embedding", {}).get("ours_images_per_second"),
        "data_path_images_per_second": result.get("data_path", {}).get("images_per_second"),
        "recall_at_1_fp32_vs_bf16": [
            result.get("recall_parity", {}).get(f"recall_at_1_{p}") for p in ("fp32", "bf16")
        ],
        "errors": sorted(name for name, entry in sections.items() if "error" in entry),
    }
    if ours_compiled and bare_compiled:
        summary["train_ratio_ours_to_bare_compiled"] = round(ours_compiled / bare_compiled, 3)
    if ours_compiled and eager.get("ours_images_per_second"):
        from imgcls_pipeline.core.training.compiling import decide

        speedup = ours_compiled / eager["ours_images_per_second"]
        device = "cuda" if summary["devices"] else "cpu"
        summary["compile_speedup_ours"] = round(speedup, 3)
        summary["compile_auto_would_choose"] = decide("auto", device, speedup).reason
    scaled = result.get("scaling", {})
    if scaled.get("images_per_second") and eager.get("ours_images_per_second"):
        one = eager["ours_images_per_second"]
        summary["scaling_efficiency"] = round(
            scaled["images_per_second"] / (one * scaled["world_size"]), 3
        )
    return summary


# --- the worker ---


def _worker(args: argparse.Namespace) -> int:
    import gpu_check_sections as sections  # torch and the project: only in the worker

    plan = sections.TINY if args.tiny else sections.FULL
    if args.scaling_processes:
        plan = sections.Plan.from_json(
            json.dumps({**json.loads(plan.to_json()), "scaling_processes": args.scaling_processes})
        )
    backend = plan.compile_backend
    work = {
        "devices": lambda: sections.devices(plan),
        "train_eager": lambda: sections.train_step(plan, None, ("ours", "bare")),
        "embedding": lambda: sections.embedding(plan),
        "recall_parity": lambda: sections.recall_parity(plan),
        "data_path": lambda: sections.data_path(plan),
        "scaling": lambda: sections.scaling(plan, BOXES["scaling"]),
        "train_compiled_ours": lambda: sections.train_step(plan, backend, ("ours",)),
        "train_compiled_bare": lambda: sections.train_step(plan, backend, ("bare",)),
    }
    for name in args.worker.split(","):
        _emit({"event": "start", "section": name})
        try:
            if name == args.stall:
                time.sleep(3600)  # --stall: shows what the time box does
            _emit({"event": "done", "section": name, "result": work[name]()})
        except Exception as err:  # one section's failure (OOM, a compile error) is its own
            _emit({"event": "done", "section": name, "error": f"{type(err).__name__}: {err}"})
        _release_memory()
    return 0


def _emit(event: dict[str, Any]) -> None:
    print(MARK + json.dumps(event), flush=True)


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="gpu_check.json", help="the JSON to write")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="test_efficientnet at 64 px, small photos, few steps: runs on a CPU in seconds",
    )
    parser.add_argument(
        "--budget", type=float, default=450, help="seconds for the whole check (default 450)"
    )
    parser.add_argument(
        "--sections", type=lambda v: v.split(","), help=f"a subset of {','.join(BOXES)}"
    )
    parser.add_argument(
        "--box",
        type=_box,
        action="append",
        metavar="SECTION=SECONDS",
        help="another time box for a section",
    )
    parser.add_argument(
        "--scaling-processes",
        type=int,
        default=0,
        help="processes for the scaling section (default: one per GPU; 2 on a CPU to try it)",
    )
    parser.add_argument("--stall", help="make this section hang (to see the time box at work)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _box(text: str) -> tuple[str, float]:
    name, _, seconds = text.partition("=")
    if name not in BOXES:
        raise argparse.ArgumentTypeError(f"unknown section {name!r}; one of {', '.join(BOXES)}")
    return name, float(seconds)


if __name__ == "__main__":
    sys.exit(main())

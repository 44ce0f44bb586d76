"""GPU auto-detection: device properties in, precision / workers / accumulation out.

``resolve_hardware`` is a pure function of the device's properties so the specification's table
can be tested with faked cards on a machine without a GPU:

| GPU                 | precision | workers | accumulation |
|---------------------|-----------|---------|--------------|
| A100 80GB           | bf16      | 16      | 1            |
| A100 40GB           | bf16      | 8       | 2            |
| RTX 3090 24GB       | fp16      | 4       | 4            |
| other Ampere+ (≥8.0)| bf16      | auto    | auto         |
| pre-Ampere          | fp16      | 4       | 4            |
| CPU                 | fp32      | auto    | 1            |

"auto" on other Ampere+ cards: workers = min(16, cpu_count - 1); accumulation follows memory the way
the table's 80/40/24 GB rows do, so the effective batch stays about the A100 80GB's: >= 70 GB -> 1,
>= 35 GB -> 2, >= 18 GB -> 4, smaller -> 8. Workers from the table never exceed the machine's cores
(JPEG decoding cannot use more). CPU: workers = min(4, cores - 1), accumulation 1.

The precision column is the one precision policy: training reads it through ``resolve_hardware``
(where ``use_bf16`` may override it) and records the result in its checkpoint; inference embeds at
that recorded precision, and falls back to ``precision_for`` when none is recorded (see
``search.embedding.inference_precision``). Both turn it into autocast settings with
``amp_settings``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from imgcls_pipeline.core.atomic import write_text_atomic
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.tables import read_json_object

if TYPE_CHECKING:
    import torch

Precision = Literal["bf16", "fp16", "fp32"]

_A100_80GB_MIN_GB = 70.0  # an "A100 80GB" reports ~79.2 GiB, an "A100 40GB" ~39.4 GiB
_ACCUM_BY_MEMORY = ((70.0, 1), (35.0, 2), (18.0, 4), (0.0, 8))


@dataclass(frozen=True)
class DeviceProps:
    """What the table needs to know about a CUDA device."""

    name: str
    total_memory_gb: float
    major: int
    minor: int

    @property
    def is_ampere_or_newer(self) -> bool:
        return self.major >= 8


@dataclass(frozen=True)
class HardwareSettings:
    device: Literal["cuda", "cpu"]
    name: str
    total_memory_gb: float
    compute_capability: str | None
    precision: Precision
    num_workers: int
    accum_steps: int
    tf32: bool
    cudnn_benchmark: bool
    channels_last: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> HardwareSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        missing = names - set(raw)
        if unknown or missing:
            raise UserError(
                f"Hardware settings must have exactly the keys {sorted(names)}; "
                f"unknown {sorted(unknown)}, missing {sorted(missing)}."
            )
        return cls(**raw)

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """``to_dict`` as a JSON file: the training process then trains with exactly these."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def read_json(cls, path: str | os.PathLike[str], *, remedy: str) -> HardwareSettings:
        """The settings ``write_json`` wrote; a missing or bad file is one UserError + ``remedy``."""
        return cls.from_dict(read_json_object(path, what="hardware settings file", remedy=remedy))


@dataclass(frozen=True)
class LoaderSettings:
    """How a DataLoader feeds the device (``loader_settings``)."""

    pin_memory: bool
    prefetch_factor: int | None  # batches each worker keeps ready; None without workers
    persistent_workers: bool


# Batches ready or being decoded across all workers: enough that the GPU does not wait when a few
# workers hit large photos at once, few enough that host memory stays modest (a 64-photo batch at
# 480 px is 177 MB of float32).
_BATCHES_IN_FLIGHT = 8


def loader_settings(hardware: HardwareSettings) -> LoaderSettings:
    """Per device: pinned memory on CUDA only, about ``_BATCHES_IN_FLIGHT`` batches prefetched,
    workers kept between epochs.

    - pin_memory (CUDA): a batch in page-locked memory is copied to the GPU by DMA while the GPU
      computes (the loop's ``non_blocking=True``); from pageable memory the copy goes through a
      staging buffer and holds the training thread. On the CPU there is no copy to speed up.
    - prefetch_factor: max(2, ceil(8 / workers)): 16 workers keep 2 each (PyTorch's default, 32
      batches), 4 keep 2, 2 keep 4, 1 keeps 8; more per worker only adds memory.
    - persistent workers: re-forking 16 workers for every epoch (and every validation pass) costs
      seconds and their warm caches; kept alive, they idle between passes.
    """
    workers = hardware.num_workers
    return LoaderSettings(
        pin_memory=hardware.device == "cuda",
        prefetch_factor=max(2, -(-_BATCHES_IN_FLIGHT // workers)) if workers > 0 else None,
        persistent_workers=workers > 0,
    )


def detect_device_props(index: int = 0) -> DeviceProps | None:
    """Properties of CUDA device ``index``, or None when PyTorch sees no CUDA device."""
    import torch  # here, not at the top: the orchestrator imports this module too

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(index)
    return DeviceProps(
        name=props.name,
        total_memory_gb=props.total_memory / 1024**3,
        major=props.major,
        minor=props.minor,
    )


_PROBE = (
    "import json, torch\n"
    "n = torch.cuda.device_count() if torch.cuda.is_available() else 0\n"
    "p = torch.cuda.get_device_properties(0) if n else None\n"
    "print(json.dumps(n and {'count': n, 'name': p.name, 'memory': p.total_memory,"
    " 'major': p.major, 'minor': p.minor}))\n"
)


def probe_devices_in_subprocess(timeout: float = 120) -> tuple[DeviceProps | None, int]:
    """(properties of GPU 0, number of GPUs), asked of a short-lived child process.

    Asking in-process would create a CUDA context that the orchestrator then holds on GPU 0 for
    the whole training run (hundreds of MB), beside the training processes it launches.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        return None, 0
    if not found:
        return None, 0
    props = DeviceProps(
        name=found["name"],
        total_memory_gb=found["memory"] / 1024**3,
        major=found["major"],
        minor=found["minor"],
    )
    return props, int(found["count"])


def resolve_hardware(
    props: DeviceProps | None,
    cpu_count: int,
    use_bf16: bool | None = None,
    num_workers: int | None = None,
    accum_steps: int | None = None,
) -> HardwareSettings:
    """Apply the auto-detection table; explicit values (not None) win over the table."""
    if props is None:
        return _cpu_settings(cpu_count, use_bf16, num_workers, accum_steps)

    precision, workers, accum, row = _table_row(props, cpu_count)
    workers = min(workers, max(cpu_count, 1))
    reason = f"{props.name} ({props.total_memory_gb:.0f} GB, cc {props.major}.{props.minor}): {row}"
    if use_bf16 is True and not props.is_ampere_or_newer:
        # Pre-Ampere cards emulate bf16 slowly or not at all; silently running fp16 instead would
        # hide that the request was not honoured, so refuse.
        raise UserError(
            f"use_bf16=true needs an Ampere or newer GPU (compute capability 8.0+), but {props.name}"
            f" is {props.major}.{props.minor}; set --use_bf16=false or leave it unset."
        )
    if use_bf16 is not None:
        precision = "bf16" if use_bf16 else "fp16"
        reason += f"; use_bf16={use_bf16} set explicitly"
    if num_workers is not None:
        workers = num_workers
        reason += f"; num_workers={num_workers} set explicitly"
    if accum_steps is not None:
        accum = accum_steps
        reason += f"; accum_steps={accum_steps} set explicitly"
    return HardwareSettings(
        device="cuda",
        name=props.name,
        total_memory_gb=round(props.total_memory_gb, 1),
        compute_capability=f"{props.major}.{props.minor}",
        precision=precision,
        num_workers=workers,
        accum_steps=accum,
        tf32=props.is_ampere_or_newer,
        cudnn_benchmark=props.is_ampere_or_newer,
        channels_last=True,
        reason=reason,
    )


def precision_for(props: DeviceProps | None) -> Precision:
    """The table's precision for a device (None: no CUDA device), e.g. for inference."""
    return "fp32" if props is None else _table_row(props, cpu_count=1)[0]


def amp_settings(precision: Precision) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether to use a GradScaler) for a precision of the table."""
    import torch  # here, not at the top: the orchestrator imports this module too

    # fp16 has 5 exponent bits: small gradients underflow to zero unless the loss is scaled up
    # first (GradScaler). bf16 keeps fp32's exponent range, so it needs no scaling. Either way the
    # weights and optimizer state stay fp32; autocast only lowers the precision of activations.
    return {
        "bf16": (torch.bfloat16, False),
        "fp16": (torch.float16, True),
        "fp32": (None, False),
    }[precision]


def _table_row(props: DeviceProps, cpu_count: int) -> tuple[Precision, int, int, str]:
    name = props.name.upper()
    if "A100" in name and props.total_memory_gb >= _A100_80GB_MIN_GB:
        return "bf16", 16, 1, "A100 80GB row"
    if "A100" in name:
        return "bf16", 8, 2, "A100 40GB row"
    if "3090" in name:
        return "fp16", 4, 4, "RTX 3090 row"
    if props.is_ampere_or_newer:
        workers = min(16, max(cpu_count - 1, 1))
        accum = next(a for floor_gb, a in _ACCUM_BY_MEMORY if props.total_memory_gb >= floor_gb)
        return "bf16", workers, accum, "other Ampere+ row (workers and accumulation computed)"
    return "fp16", 4, 4, "pre-Ampere row"


def _cpu_settings(
    cpu_count: int, use_bf16: bool | None, num_workers: int | None, accum_steps: int | None
) -> HardwareSettings:
    if use_bf16 is True:
        raise UserError(
            "use_bf16=true needs an Ampere or newer GPU, but no CUDA device was found; "
            "set --use_bf16=false or leave it unset to train in fp32 on the CPU."
        )
    reason = "no CUDA device: fp32 on the CPU"
    workers = min(4, max(cpu_count - 1, 0)) if num_workers is None else num_workers
    accum = 1 if accum_steps is None else accum_steps
    if num_workers is not None:
        reason += f"; num_workers={num_workers} set explicitly"
    if accum_steps is not None:
        reason += f"; accum_steps={accum_steps} set explicitly"
    return HardwareSettings(
        device="cpu",
        name="cpu",
        total_memory_gb=0.0,
        compute_capability=None,
        precision="fp32",
        num_workers=workers,
        accum_steps=accum,
        tf32=False,
        cudnn_benchmark=False,
        channels_last=False,
        reason=reason,
    )

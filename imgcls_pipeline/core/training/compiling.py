"""``torch.compile`` for the training step: the ``compile`` setting (off / on / auto).

- off: eager.
- on: compiled, on any device.
- auto (the default): eager on the CPU, where inductor's C++ code generation takes minutes and the
  model's convolutions run in the same oneDNN kernels either way; on CUDA compiled only when a
  short warm-up shows it faster: a few forward + backward passes on one batch of the training's
  shape, timed eager and compiled, and the compiled step at least ``MIN_SPEEDUP`` times faster
  (averaged over the ranks, so every rank makes the same choice).

A compile error (dynamo cannot trace, inductor fails, no C++ compiler, ...) surfaces on the first
call of the compiled module, so every trial calls it ``WARMUP_CALLS`` times first; when any rank
failed, all fall back to eager with one warning, and the run goes on rather than ending. The
warm-up leaves no trace: weights are not stepped, gradients are cleared, and BatchNorm statistics
and random states are put back, so a run trains the same whichever way the choice goes.

The choice is made whenever the trained module is built: at the start and again when the backbone
is unfrozen (the step then does several times more work, and the compiled graph is new anyway).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from imgcls_pipeline.core.errors import describe
from imgcls_pipeline.core.training.rng import capture_rng_state, restore_rng_state

CompileSetting = Literal["off", "on", "auto"]

# Below 3 % the compiled step is within the noise of a short timing: not worth its compile time.
MIN_SPEEDUP = 1.03
WARMUP_CALLS = 2  # the first compiles the forward, the backward compiles on the first backward
TIMED_CALLS = 5
# inductor: torch.compile's default backend. Tests may name a cheaper one (the CPU compile of a
# small network takes minutes here).
BACKEND: str | Callable[..., Any] = "inductor"


@dataclass(frozen=True)
class CompileChoice:
    compiled: bool
    reason: str
    failed: bool = False  # compiling raised: the run stays eager from then on


def needs_trial(setting: CompileSetting, device_type: str) -> bool:
    """Whether ``setting`` on this device means compiling (and so a warm-up) at all."""
    return setting == "on" or (setting == "auto" and device_type == "cuda")


def decide(setting: CompileSetting, device_type: str, speedup: float | None) -> CompileChoice:
    """The choice for a module whose trial compiled (``speedup``: eager / compiled step time,
    None when nothing was timed)."""
    if setting == "off":
        return CompileChoice(False, "compile=off")
    if setting == "on":
        return CompileChoice(True, "compile=on")
    if device_type != "cuda":
        return CompileChoice(False, "compile=auto: eager on the CPU")
    if speedup is None:
        raise ValueError("compile=auto on CUDA needs the timed speedup")
    verdict = "compiled" if speedup >= MIN_SPEEDUP else "eager"
    return CompileChoice(
        verdict == "compiled",
        f"compile=auto: {verdict} (compiled step {speedup:.2f}× eager's speed)",
    )


def prepare(
    build: Callable[[], nn.Module],
    setting: CompileSetting,
    *,
    device: torch.device,
    trial: Callable[[nn.Module], None],
    state_of: nn.Module,
    mean_over_ranks: Callable[[float], float] = float,
    warn: Callable[[str], None] = print,
    measure: Callable[[Callable[[], None]], float] | None = None,
) -> tuple[nn.Module, CompileChoice]:
    """The module to train with (``build()``'s, compiled or not) and why.

    ``trial(module)`` runs one forward + backward of a training batch; ``state_of`` is the module
    whose buffers and gradients the trials must leave as they were. ``mean_over_ranks`` is the
    collective that makes the ranks agree (the identity in one process). ``measure(call)`` times
    ``call`` (a CUDA-synchronised wall clock by default).
    """
    eager = build()
    if not needs_trial(setting, device.type):
        return eager, decide(setting, device.type, None)
    compiled = torch.compile(eager, backend=BACKEND)
    error = None
    with _leaves_no_trace(state_of):
        try:
            for _ in range(WARMUP_CALLS):
                trial(compiled)
        except Exception as err:  # dynamo, inductor and compiler errors have no common base
            error = describe(_root_cause(err))
    if mean_over_ranks(0.0 if error is None else 1.0) > 0:
        warn(
            f"torch.compile failed ({error or 'on another rank'}); training continues in eager "
            f"mode (set compile=off to skip the attempt)."
        )
        # A fresh module: a failed backward can leave DDP's reducer waiting for gradients.
        return build(), CompileChoice(
            False, f"compile={setting}: eager after a compile error", True
        )
    speedup = None
    if setting == "auto":
        timer = measure or _timer(device)
        with _leaves_no_trace(state_of):
            eager_seconds = timer(lambda: trial(eager))
            compiled_seconds = timer(lambda: trial(compiled))
        speedup = mean_over_ranks(eager_seconds / max(compiled_seconds, 1e-12))
    choice = decide(setting, device.type, speedup)
    return (compiled if choice.compiled else eager), choice


def _root_cause(err: BaseException) -> BaseException:
    """dynamo wraps a backend's error in its own (``inner_exception``), whose first line does not
    say what failed."""
    inner = getattr(err, "inner_exception", None) or err.__cause__
    return err if inner is None else _root_cause(inner)


def _timer(device: torch.device) -> Callable[[Callable[[], None]], float]:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def measure(call: Callable[[], None]) -> float:
        call()  # the first eager call also pays cudnn's autotuning
        sync()
        start = time.perf_counter()
        for _ in range(TIMED_CALLS):
            call()
        sync()
        return (time.perf_counter() - start) / TIMED_CALLS

    return measure


@contextmanager
def _leaves_no_trace(module: nn.Module) -> Iterator[None]:
    """Put back ``module``'s buffers (BatchNorm statistics) and the random states, and clear the
    gradients, however the block ends."""
    buffers = {name: value.detach().clone() for name, value in module.named_buffers()}
    rng = capture_rng_state()
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in module.named_buffers():
                value.copy_(buffers[name])
        module.zero_grad(set_to_none=True)
        restore_rng_state(rng)

"""The compile setting: which device and timings give a compiled step, and the eager fallback.

inductor's CPU code generation takes minutes on this machine even for a few layers, so the tests
that compile use dynamo's "eager" backend: torch.compile traces the module into a graph and runs
it, without generating C++.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._dynamo.eval_frame import OptimizedModule

from imgcls_pipeline.core.training import compiling

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # only a name here: nothing is put on it


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.conv(images)).mean((2, 3)))


IMAGES = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def trial(module: nn.Module) -> None:
    module(IMAGES).square().mean().backward()


def never(_: nn.Module) -> None:
    raise AssertionError("no warm-up was expected")


class Builds:
    """``build`` for ``prepare``, counting the modules it made."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.count = 0

    def __call__(self) -> nn.Module:
        self.count += 1
        return self.module


def fake_timings(*seconds: float):
    """A ``measure`` that answers ``seconds`` in turn (eager first, then compiled)."""
    answers = iter(seconds)
    return lambda call: next(answers)


@pytest.mark.parametrize(
    ("setting", "device", "reason"),
    [
        ("off", CPU, "compile=off"),
        ("off", CUDA, "compile=off"),
        ("auto", CPU, "compile=auto: eager on the CPU"),
    ],
)
def test_off_and_auto_on_the_cpu_stay_eager_without_a_warm_up(setting, device, reason):
    net = Tiny()
    module, choice = compiling.prepare(
        Builds(net), setting, device=device, trial=never, state_of=net
    )
    assert module is net and choice == compiling.CompileChoice(False, reason)


@pytest.mark.parametrize(
    ("eager_s", "compiled_s", "compiled"),
    [(1.0, 0.5, True), (1.0, 0.95, True), (1.0, 0.99, False), (1.0, 1.3, False)],
)
def test_auto_on_cuda_compiles_when_the_warm_up_shows_it_at_least_3_percent_faster(
    monkeypatch, eager_s, compiled_s, compiled
):
    monkeypatch.setattr(compiling, "BACKEND", "eager")
    net = Tiny()
    module, choice = compiling.prepare(
        Builds(net),
        "auto",
        device=CUDA,
        trial=trial,
        state_of=net,
        measure=fake_timings(eager_s, compiled_s),
    )
    assert choice.compiled is compiled and isinstance(module, OptimizedModule) is compiled
    assert f"{eager_s / compiled_s:.2f}×" in choice.reason


def test_the_ranks_choose_by_their_mean_speedup(monkeypatch):
    monkeypatch.setattr(compiling, "BACKEND", "eager")
    net = Tiny()
    # This rank saw 1.5× faster, the other 0.5× (slower): the mean, 1.0×, keeps both eager.
    _, choice = compiling.prepare(
        Builds(net),
        "auto",
        device=CUDA,
        trial=trial,
        state_of=net,
        mean_over_ranks=lambda value: (value + 0.5) / 2 if value > 0.1 else value,
        measure=fake_timings(1.5, 1.0),
    )
    assert not choice.compiled and "1.00×" in choice.reason


def test_on_compiles_with_torch_compile_and_the_warm_up_leaves_no_trace(monkeypatch):
    monkeypatch.setattr(compiling, "BACKEND", "eager")
    net = Tiny().train()
    statistics = {name: value.clone() for name, value in net.named_buffers()}
    torch.manual_seed(5)
    expected_draw = torch.rand(3)
    torch.manual_seed(5)

    module, choice = compiling.prepare(Builds(net), "on", device=CPU, trial=trial, state_of=net)

    assert choice == compiling.CompileChoice(True, "compile=on")
    assert isinstance(module, OptimizedModule) and module._orig_mod is net
    assert torch.equal(torch.rand(3), expected_draw)  # the random stream is where it was
    assert all(p.grad is None for p in net.parameters())
    for name, value in net.named_buffers():
        assert torch.equal(value, statistics[name]), name
    torch.testing.assert_close(module(IMAGES), net(IMAGES))


def test_a_compile_error_falls_back_to_a_fresh_eager_module_with_one_warning(monkeypatch):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(compiling, "BACKEND", broken_backend)
    net = Tiny()
    builds, warnings = Builds(net), []
    module, choice = compiling.prepare(
        builds, "on", device=CPU, trial=trial, state_of=net, warn=warnings.append
    )
    assert module is net and builds.count == 2  # rebuilt: DDP's reducer may be mid-backward
    assert choice.failed and not choice.compiled
    assert len(warnings) == 1
    assert "no C++ compiler found" in warnings[0] and "eager" in warnings[0]
    assert all(p.grad is None for p in net.parameters())

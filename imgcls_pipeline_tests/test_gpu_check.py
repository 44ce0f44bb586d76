"""benchmarks/gpu_check.py end to end on the CPU (``--tiny``): every section that a GPU machine
runs, so that the check works the first time it meets one."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls_pipeline.core.hardware import HardwareSettings, loader_settings

REPO = Path(__file__).resolve().parents[1]
SECTIONS = {
    "devices",
    "train_eager",
    "embedding",
    "recall_parity",
    "data_path",
    "scaling",
    "train_compiled_ours",
    "train_compiled_bare",
}


def gpu_check(tmp_path: Path, *args: str) -> tuple[dict, str]:
    output = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--tiny", "--output", str(output), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(output.read_text()), done.stdout


@pytest.mark.slow
def test_tiny_check_fills_every_section_with_figures(tmp_path):
    document, stdout = gpu_check(tmp_path)
    sections = {name: entry["result"] for name, entry in document["sections"].items()}
    assert set(sections) == SECTIONS and document["summary"]["errors"] == []
    assert sections["devices"]["hardware"]["device"] == "cpu"
    # What the training loop would use here, as reported.
    hardware = HardwareSettings.from_dict(sections["devices"]["hardware"])
    assert sections["devices"]["loader"] == dataclasses.asdict(loader_settings(hardware))
    for name, runs in [
        ("train_eager", ("ours", "bare")),
        ("train_compiled_ours", ("ours",)),
        ("train_compiled_bare", ("bare",)),
    ]:
        assert all(sections[name][f"{run}_images_per_second"] > 0 for run in runs), name
    assert sections["train_compiled_ours"]["compile_backend"] == "eager"
    assert sections["embedding"]["ours_images_per_second"] > 0
    assert sections["data_path"]["images_timed"] > 0
    assert sections["data_path"]["images_per_second"] > 0
    parity = sections["recall_parity"]
    assert parity["images"] == 16 and parity["cosine_fp32_bf16_min"] > 0.99
    assert sections["scaling"] == {"skipped": "one GPU: nothing to scale over"}
    summary = document["summary"]
    assert summary["train_ratio_ours_to_bare_eager"] > 0
    assert summary["compile_auto_would_choose"] == "compile=auto: eager on the CPU"
    assert summary["recall_at_1_fp32_vs_bf16"] == [
        parity["recall_at_1_fp32"],
        parity["recall_at_1_bf16"],
    ]
    assert "Written: " in stdout


@pytest.mark.slow
def test_a_section_past_its_time_box_costs_only_itself_and_ddp_scaling_runs(tmp_path):
    document, _ = gpu_check(
        tmp_path,
        "--sections", "devices,embedding,scaling",
        "--stall", "embedding",
        "--box", "embedding=3",
        "--scaling-processes", "2",
    )  # fmt: skip
    sections = document["sections"]
    assert sections["embedding"]["error"] == "ran past its 3 s box; the worker was stopped"
    assert sections["devices"]["result"]["cards"] == []  # before the stalled section
    scaling = sections["scaling"]["result"]  # after it, in a new worker: torchrun, 2 gloo ranks
    assert scaling["world_size"] == 2 and scaling["images_per_second"] > 0
    assert document["summary"]["errors"] == ["embedding"]

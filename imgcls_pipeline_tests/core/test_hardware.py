import json

import pytest
import torch

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.hardware import (
    DeviceProps,
    HardwareSettings,
    LoaderSettings,
    amp_settings,
    detect_device_props,
    loader_settings,
    precision_for,
    resolve_hardware,
)

A100_80 = DeviceProps("NVIDIA A100-SXM4-80GB", 79.2, 8, 0)
A100_40 = DeviceProps("NVIDIA A100-PCIE-40GB", 39.4, 8, 0)
RTX_3090 = DeviceProps("NVIDIA GeForce RTX 3090", 23.7, 8, 6)
V100 = DeviceProps("Tesla V100-SXM2-16GB", 15.8, 7, 0)
T4 = DeviceProps("Tesla T4", 14.6, 7, 5)


@pytest.mark.parametrize(
    ("props", "precision", "workers", "accum"),
    [
        (A100_80, "bf16", 16, 1),
        (A100_40, "bf16", 8, 2),
        (RTX_3090, "fp16", 4, 4),
        (V100, "fp16", 4, 4),
        (T4, "fp16", 4, 4),
        # other Ampere+: workers = min(16, cores - 1), accumulation from memory
        (DeviceProps("NVIDIA H100 80GB HBM3", 79.1, 9, 0), "bf16", 16, 1),
        (DeviceProps("NVIDIA H200", 139.8, 9, 0), "bf16", 16, 1),
        (DeviceProps("NVIDIA RTX A6000", 47.5, 8, 6), "bf16", 16, 2),
        (DeviceProps("NVIDIA L4", 22.0, 8, 9), "bf16", 16, 4),
        (DeviceProps("NVIDIA GeForce RTX 4080", 15.7, 8, 9), "bf16", 16, 8),
    ],
)
def test_specification_table(props, precision, workers, accum):
    hw = resolve_hardware(props, cpu_count=32)
    assert (hw.device, hw.precision, hw.num_workers, hw.accum_steps) == (
        "cuda",
        precision,
        workers,
        accum,
    )
    assert hw.tf32 == hw.cudnn_benchmark == (props.major >= 8)
    assert hw.channels_last
    assert props.name in hw.reason


def test_other_ampere_workers_follow_the_cores():
    hw = resolve_hardware(DeviceProps("NVIDIA A40", 44.4, 8, 6), cpu_count=6)
    assert hw.num_workers == 5


def test_table_workers_never_exceed_the_cores():
    assert resolve_hardware(A100_80, cpu_count=8).num_workers == 8


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 1), (4, 3), (64, 4)])
def test_cpu_is_fp32_without_accumulation(cores, workers):
    hw = resolve_hardware(None, cpu_count=cores)
    assert (hw.device, hw.precision, hw.num_workers, hw.accum_steps) == ("cpu", "fp32", workers, 1)
    assert not (hw.tf32 or hw.cudnn_benchmark or hw.channels_last)


def test_explicit_values_win():
    hw = resolve_hardware(A100_80, cpu_count=32, use_bf16=False, num_workers=3, accum_steps=6)
    assert (hw.precision, hw.num_workers, hw.accum_steps) == ("fp16", 3, 6)
    assert "use_bf16=False" in hw.reason
    assert resolve_hardware(RTX_3090, cpu_count=32, use_bf16=True).precision == "bf16"
    assert resolve_hardware(None, cpu_count=8, num_workers=0, accum_steps=2).accum_steps == 2


def test_bf16_is_refused_where_unsupported():
    with pytest.raises(UserError, match="use_bf16=false"):
        resolve_hardware(V100, cpu_count=8, use_bf16=True)
    with pytest.raises(UserError, match="no CUDA device"):
        resolve_hardware(None, cpu_count=8, use_bf16=True)


def test_settings_round_trip_through_json():
    hw = resolve_hardware(A100_40, cpu_count=16)
    assert HardwareSettings.from_dict(json.loads(json.dumps(hw.to_dict()))) == hw
    with pytest.raises(UserError, match="unknown"):
        HardwareSettings.from_dict({**hw.to_dict(), "extra": 1})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")
def test_no_gpu_is_detected_as_none():
    assert detect_device_props() is None


def test_probe_reads_the_child_process_answer(monkeypatch):
    import subprocess

    from imgcls_pipeline.core import hardware

    answer = '{"count": 4, "name": "NVIDIA H100 80GB HBM3", "memory": 85520809984, "major": 9, "minor": 0}'

    def fake_run(*args, **kwargs):
        return subprocess.CompletedProcess(args, 0, stdout=answer + "\n", stderr="")

    monkeypatch.setattr(hardware.subprocess, "run", fake_run)
    props, count = hardware.probe_devices_in_subprocess()
    assert count == 4 and props.name.startswith("NVIDIA H100") and props.major == 9
    assert round(props.total_memory_gb) == 80

    monkeypatch.setattr(
        hardware.subprocess,
        "run",
        lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout="0\n", stderr=""),
    )
    assert hardware.probe_devices_in_subprocess() == (None, 0)


@pytest.mark.parametrize(
    "props", [A100_80, A100_40, RTX_3090, V100, T4, DeviceProps("NVIDIA H200", 139.8, 9, 0)]
)
def test_inference_precision_is_the_tables_training_precision(props):
    assert precision_for(props) == resolve_hardware(props, cpu_count=8).precision
    assert precision_for(None) == resolve_hardware(None, cpu_count=8).precision == "fp32"


def test_precision_to_autocast_settings():
    assert amp_settings("bf16") == (torch.bfloat16, False)
    assert amp_settings("fp16") == (torch.float16, True)  # fp16 needs the GradScaler
    assert amp_settings("fp32") == (None, False)


def test_hardware_settings_survive_the_json_handoff_to_the_training_process(tmp_path):
    settings = resolve_hardware(RTX_3090, 12)
    settings.write_json(tmp_path / "hardware.json")
    assert HardwareSettings.read_json(tmp_path / "hardware.json", remedy="x") == settings
    (tmp_path / "hardware.json").write_text('{"device": "cpu"}')
    with pytest.raises(UserError, match=r"missing \[.*'precision'"):
        HardwareSettings.read_json(tmp_path / "hardware.json", remedy="x")
    with pytest.raises(UserError, match=r"does not exist; detect again\.$"):
        HardwareSettings.read_json(tmp_path / "absent.json", remedy="detect again")


@pytest.mark.parametrize(
    ("props", "cores", "expected"),
    [
        # H100/H200-class machine: 16 workers keep 2 batches each, pinned for the GPU copy.
        (DeviceProps("NVIDIA H200", 139.8, 9, 0), 64, LoaderSettings(True, 2, True)),
        (RTX_3090, 32, LoaderSettings(True, 2, True)),  # 4 workers
        (DeviceProps("NVIDIA L4", 22.0, 8, 9), 3, LoaderSettings(True, 4, True)),  # 2 workers
        (None, 2, LoaderSettings(False, 8, True)),  # CPU, 1 worker: nothing to pin for
        (None, 1, LoaderSettings(False, None, False)),  # no workers: the main process loads
    ],
)
def test_loader_settings_per_device(props, cores, expected):
    assert loader_settings(resolve_hardware(props, cores)) == expected

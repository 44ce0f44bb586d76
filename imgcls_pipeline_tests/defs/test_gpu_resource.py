import sys

import dagster as dg

from imgcls_pipeline.core.hardware import DeviceProps
from imgcls_pipeline.core.settings import TrainingConfig
from imgcls_pipeline.defs.gpu import GpuResource
from imgcls_pipeline.defs.training_assets import training_command

A100_80GB = DeviceProps(name="NVIDIA A100-SXM4-80GB", total_memory_gb=79.2, major=8, minor=0)


def _with_card(resource: GpuResource, props: DeviceProps | None) -> GpuResource:
    resource._props = props  # what setup_for_execution detects on a machine with that card
    return resource


def test_table_values_when_nothing_is_set() -> None:
    settings = _with_card(GpuResource(), A100_80GB).resolve(TrainingConfig())
    assert (settings.precision, settings.accum_steps) == ("bf16", 1)
    assert settings.tf32 and settings.channels_last


def test_resource_values_win_over_the_table_and_run_config_wins_over_both() -> None:
    resource = _with_card(GpuResource(use_bf16=False, num_workers=3, accum_steps=2), A100_80GB)
    settings = resource.resolve(TrainingConfig())
    assert (settings.precision, settings.num_workers, settings.accum_steps) == ("fp16", 3, 2)
    run = TrainingConfig(num_workers=1, gradient_accumulation_steps=4)
    settings = resource.resolve(run)
    assert (settings.precision, settings.num_workers, settings.accum_steps) == ("fp16", 1, 4)


def test_cpu_machine_gets_fp32_and_no_accumulation() -> None:
    settings = _with_card(GpuResource(), None).resolve()
    assert (settings.device, settings.precision, settings.accum_steps) == ("cpu", "fp32", 1)


def test_setup_detects_this_machine() -> None:
    import torch

    with dg.build_init_resource_context() as context:
        resource = GpuResource()
        resource.setup_for_execution(context)
    # The probe runs in a subprocess (so the parent never initialises CUDA); it must see what
    # torch sees here.
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert resource.gpu_count == visible
    settings = resource.resolve()
    assert settings.device == ("cuda" if visible else "cpu")
    assert settings.name == (torch.cuda.get_device_name(0) if visible else "cpu")


def test_several_gpus_launch_torchrun() -> None:
    assert training_command(1, ["--x"]) == [
        sys.executable,
        "-m",
        "imgcls_pipeline.train_script",
        "--x",
    ]
    command = training_command(4, ["--x"])
    # torchrun through the lifeline, so that it dies with the orchestrator
    assert command[:6] == [
        sys.executable,
        "-m",
        "imgcls_pipeline.core.lifeline",
        sys.executable,
        "-m",
        "torch.distributed.run",
    ]
    assert "--nproc_per_node=4" in command
    assert command[-3:] == ["-m", "imgcls_pipeline.train_script", "--x"]

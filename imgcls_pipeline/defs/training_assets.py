"""The trained checkpoint: training runs in its own process (Dagster Pipes; torchrun for several
GPUs), so a crash or out-of-memory there fails the step, never the orchestrator."""

import json
import sys
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from imgcls_pipeline.core.report import png_markdown, training_curve_png
from imgcls_pipeline.defs.data_assets import splits
from imgcls_pipeline.defs.gpu import GpuResource
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline.defs.run_config import config_class, to_pipeline_config

TrainedCheckpointConfig = config_class("trained_checkpoint")

# Terminating the run sends SIGINT to training, which then saves its checkpoint and stops;
# give it time to finish writing a large model before it is killed.
TERMINATION_GRACE_SECONDS = 300


def training_command(gpu_count: int, arguments: list[str]) -> list[str]:
    """One process on a CPU or one GPU; torchrun with one process per GPU when there are more."""
    if gpu_count > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={gpu_count}",
            "-m",
            "imgcls_pipeline.train_script",
            *arguments,
        ]
    return [sys.executable, "-m", "imgcls_pipeline.train_script", *arguments]


@dg.asset(
    group_name="training",
    deps=[splits],
    pool="gpu",
    kinds={"pytorch"},
    description="EfficientNetV2 + ArcFace (margin schedule) trained on P×K class-balanced "
    "batches; best_model.pt / latest_model.pt / metrics.csv in the checkpoint folder. Resumes "
    "from latest_model.pt unless `fresh` is set.",
)
def trained_checkpoint(
    context: dg.AssetExecutionContext,
    config: TrainedCheckpointConfig,
    paths: PipelinePaths,
    gpu: GpuResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    pipeline_config = to_pipeline_config(config)
    hardware = gpu.resolve(pipeline_config.training)
    context.log.info(f"Training settings: {hardware.reason}")
    with tempfile.TemporaryDirectory(prefix="imgcls-train-") as scratch:
        config_file = Path(scratch) / "config.json"
        hardware_file = Path(scratch) / "hardware.json"
        config_file.write_text(json.dumps(pipeline_config.to_dict()))
        hardware_file.write_text(json.dumps(hardware.to_dict()))
        arguments = [
            "--config-json",
            str(config_file),
            "--hardware-json",
            str(hardware_file),
            "--data-dir",
            str(paths.data),
            "--splits-dir",
            str(paths.splits),
            "--checkpoint-dir",
            str(paths.checkpoints),
        ]
        if context.run.tags.get("imgcls/command"):
            arguments.append("--progress")  # started from a terminal by `imgcls`
        invocation = pipes_subprocess_client.run(
            context=context, command=training_command(gpu.gpu_count, arguments)
        )
    result = invocation.get_materialize_result()
    metadata = dict(result.metadata or {})
    # The script reports the settings it trained with (hardware JSON, precision, device).
    metadata["gpu_count"] = gpu.gpu_count
    metrics_file = paths.checkpoints / "metrics.csv"
    if metrics_file.is_file():
        history = pd.read_csv(metrics_file)
        if not history.empty:
            metadata["training_curve"] = dg.MetadataValue.md(
                png_markdown(training_curve_png(history), "training curve")
            )
    metadata["checkpoint"] = dg.MetadataValue.path(str(paths.checkpoints / "best_model.pt"))
    return dg.MaterializeResult(metadata=metadata)


def pipes_client() -> dg.PipesSubprocessClient:
    return dg.PipesSubprocessClient(termination_timeout_seconds=TERMINATION_GRACE_SECONDS)

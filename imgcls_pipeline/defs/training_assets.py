"""The trained checkpoint: training runs in its own process (Dagster Pipes; torchrun for several
GPUs), so a crash or out-of-memory there fails the step, never the orchestrator."""

import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import dagster as dg

from imgcls_pipeline.core import lifeline
from imgcls_pipeline.core.atomic import pid_alive
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.locks import refuse_if_locked
from imgcls_pipeline.defs.cache_assets import image_cache
from imgcls_pipeline.defs.data_assets import splits
from imgcls_pipeline.defs.gpu import GpuResource
from imgcls_pipeline.defs.resources import PipelinePaths, TrainingLauncher
from imgcls_pipeline.defs.result_metadata import training_metadata
from imgcls_pipeline.defs.run_config import TrainedCheckpointConfig

# Dagster 1.13's own Pipes client calls a "preview" API internally; nothing for a user to act on.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*expected_writer_count")

# Terminating the run sends SIGINT to training, which then saves its checkpoint and stops;
# give it time to finish writing a large model before it is killed.
TERMINATION_GRACE_SECONDS = 300
# Scratch folders are named after the process that made them, so that a later run can tell the
# ones of a killed process (removed) from those of a live one (kept).
SCRATCH_PREFIX = "imgcls-train-"


def training_command(gpu_count: int, arguments: list[str]) -> list[str]:
    """One process on a CPU or one GPU; torchrun with one process per GPU when there are more.

    torchrun is started through ``core.lifeline`` so that it too dies with this process; its
    workers (train_script) follow it in turn.
    """
    if gpu_count > 1:
        return [
            sys.executable,
            "-m",
            "imgcls_pipeline.core.lifeline",
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
    deps=[splits, image_cache],
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
    training_launcher: TrainingLauncher,
) -> dg.MaterializeResult:
    pipeline_config = config.pipeline_config()
    launch = training_launcher.settings()
    remote = launch.client != "local"
    hardware = gpu.resolve(pipeline_config.training)
    from_terminal = bool(context.run.tags.get("imgcls/command"))
    # Not printed: the training process's first line repeats it on the terminal. A remote
    # training detects its own GPUs, so this machine's would say nothing about it.
    if not remote:
        context.log.info(f"Training settings: {hardware.reason}")
    # The training process takes the folder's lock itself; asking here too refuses before the
    # process and its imports start.
    refuse_if_locked(paths.checkpoints, "checkpoint folder")
    remove_orphan_scratch_folders()
    # Training pods read the launch files from a volume they share with this run (artifacts).
    scratch_parent = paths.artifacts.resolve() if remote else None
    if scratch_parent is not None:
        scratch_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(
        prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=scratch_parent
    ) as scratch:
        config_file = Path(scratch) / "config.json"
        hardware_file = Path(scratch) / "hardware.json"
        error_file = Path(scratch) / "error.txt"
        pipeline_config.write_json(config_file)
        hardware.write_json(hardware_file)
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
            "--artifacts-dir",
            str(paths.artifacts),
            "--error-file",
            str(error_file),
        ]
        if from_terminal:
            arguments.append("--progress")  # progress bars and log lines on the terminal
        try:
            if remote:
                from imgcls_pipeline.defs.training_launch import run_remote

                invocation = run_remote(context, launch, arguments)
            else:
                invocation = pipes_subprocess_client.run(
                    context=context,
                    command=training_command(gpu.gpu_count, arguments),
                    env=lifeline.child_env(),  # training dies with this process, even on kill -9
                )
        except Exception:
            # A mistake the user can fix (bad resume, missing weights, empty split) reaches the
            # UI and `imgcls` as its own sentence, not as "process failed with code 1".
            if error_file.is_file() and error_file.read_text(encoding="utf-8").strip():
                raise UserError(error_file.read_text(encoding="utf-8").strip()) from None
            raise
    result = invocation.get_materialize_result()
    # The script reports the settings it trained with (hardware JSON, precision, device).
    gpu_count = launch.nodes * launch.gpus_per_node if remote else gpu.gpu_count
    reported = {**(result.metadata or {}), "gpu_count": gpu_count}
    return dg.MaterializeResult(metadata=training_metadata(reported, paths.checkpoints))


def remove_orphan_scratch_folders() -> None:
    """Delete the scratch folders of training launches whose process is gone (killed)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def pipes_client() -> dg.PipesSubprocessClient:
    return dg.PipesSubprocessClient(termination_timeout_seconds=TERMINATION_GRACE_SECONDS)

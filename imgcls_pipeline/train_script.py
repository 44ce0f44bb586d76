"""Training entry point, run as its own process (by Dagster Pipes, torchrun, or by hand).

    python -m imgcls_pipeline.train_script --config-json CONFIG.json --data-dir DATA \\
        --splits-dir SPLITS --checkpoint-dir CHECKPOINTS [--artifacts-dir ARTIFACTS] \\
        [--hardware-json HW.json] [--progress]
    torchrun --nproc_per_node N -m imgcls_pipeline.train_script ...   (same flags)

CONFIG.json is written by ``PipelineConfig.write_json``, HW.json by ``HardwareSettings.write_json``
(detected here when omitted). SIGINT/SIGTERM stop the run cleanly: the last completed epoch is in
latest_model.pt and the exit code is 0. A second signal kills at once (the checkpoint files are
written atomically, so even that cannot leave a broken one).

Rank 0 holds the checkpoint folder's lock (``core.locks``) for the whole run: a second training
into the same folder refuses at once. Started with ``IMGCLS_PARENT_PID`` set (as the training
asset does), the process dies with that parent (``core.lifeline``).

Launched by Dagster Pipes, rank 0 streams logs (``log.info``), one custom message per epoch (the
metrics row) and, when training completes, an asset materialization with the final metrics and
the hardware settings.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes

from imgcls_pipeline.core import lifeline, progress
from imgcls_pipeline.core.errors import UserError, describe
from imgcls_pipeline.core.hardware import (
    HardwareSettings,
    detect_device_props,
    resolve_hardware,
)
from imgcls_pipeline.core.locks import FolderLock
from imgcls_pipeline.core.settings import PipelineConfig
from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline.core.training import distributed
from imgcls_pipeline.core.training.loop import TrainResult, train


def main(argv: list[str] | None = None) -> int:
    lifeline.follow_parent()
    args = _parse_args(argv)
    stop = _StopRequest()
    signal.signal(signal.SIGINT, stop.handle)
    signal.signal(signal.SIGTERM, stop.handle)
    try:
        config = PipelineConfig.read_json(
            args.config_json, remedy="pass --config-json a file PipelineConfig.write_json wrote"
        )
        hardware = _hardware(args.hardware_json, config)
        info = distributed.init_from_env(hardware.device)
        folder_lock = FolderLock(args.checkpoint_dir, "checkpoint folder")
        try:
            if info.is_main:
                folder_lock.acquire()
            with _reporter(enabled=info.is_main) as pipes:
                log = _logger(pipes, echo=args.progress)
                if info.is_main and not config.training.fresh:
                    # Before hours of training, not after: a resume needs the best it compares to.
                    _note(log, ckpt.check_best_checkpoint(Path(args.checkpoint_dir)))
                result = train(
                    config,
                    data_dir=args.data_dir,
                    splits_dir=args.splits_dir,
                    checkpoint_dir=args.checkpoint_dir,
                    hardware=hardware,
                    on_epoch_end=_epoch_reporter(pipes, args.checkpoint_dir, log),
                    log=log,
                    should_stop=stop,
                    progress=args.progress,
                    artifacts_dir=args.artifacts_dir,
                )
                if info.is_main:
                    _note(log, ckpt.check_best_checkpoint(Path(args.checkpoint_dir)))
                if stop.signal_name and info.is_main:
                    log(f"{stop.signal_name} received: stopped cleanly.")
                if info.is_main and not result.interrupted:
                    _write_result_files(args, config, hardware, log)
                if pipes and not result.interrupted:
                    pipes.report_asset_materialization(metadata=materialization_metadata(result))
        finally:
            folder_lock.release()
            distributed.cleanup()
    except UserError as err:
        if args.error_file:
            # The orchestrator re-raises this sentence as the step's error, without a traceback.
            Path(args.error_file).write_text(str(err), encoding="utf-8")
        else:
            print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


def _logger(pipes: PipesContext | None, echo: bool):
    """Log through Pipes when launched by Dagster; with ``echo`` (a terminal is watching, e.g.
    `imgcls train`) print each line too, between the progress bars."""
    if pipes is None:
        return _print
    if not echo:
        return pipes.log.info

    def both(message: str) -> None:
        pipes.log.info(message)
        progress.write(message)

    return both


def _epoch_reporter(
    pipes: PipesContext | None, checkpoint_dir: str, log: Callable[[str], None]
) -> Callable[[dict[str, Any]], None]:
    """After each epoch (rank 0): the metrics row to Dagster, results.csv and the curve to disk."""

    def on_epoch_end(row: dict[str, Any]) -> None:
        # matplotlib: on rank 0, once an epoch has ended; not for every rank or a bad argument.
        from imgcls_pipeline.core.search.report_files import write_epoch_files

        if pipes is not None:
            pipes.report_custom_message(row)
        _unless_it_fails(log, "the training curve", lambda: write_epoch_files(checkpoint_dir))

    return on_epoch_end


def _write_result_files(
    args: argparse.Namespace,
    config: PipelineConfig,
    hardware: HardwareSettings,
    log: Callable[[str], None],
) -> None:
    def write() -> None:
        from imgcls_pipeline.core.search.report_files import write_training_files

        figures = write_training_files(
            args.checkpoint_dir,
            args.data_dir,
            args.splits_dir,
            config,
            device=torch.device(hardware.device),
            num_workers=hardware.num_workers,
        )
        names = ", ".join(path.name for path in figures.paths.values())
        log(f"Results in {args.checkpoint_dir}: results.csv, {names}")

    _unless_it_fails(log, "the result figures", write)


def _unless_it_fails(log: Callable[[str], None], what: str, write: Callable[[], object]) -> None:
    """Figures are for looking at: one that cannot be drawn must not fail a finished training."""
    try:
        write()
    except Exception as err:  # any drawing or reading error; the checkpoints are already saved
        log(f"Could not write {what}: {describe(err)}")


def materialization_metadata(result: TrainResult) -> dict[str, Any]:
    """JSON-friendly metadata: numbers and strings, the hardware settings as one JSON value."""
    metadata: dict[str, Any] = {
        "best_epoch": result.best_epoch,
        "last_epoch": result.last_epoch,
        "best_val_recall@1": result.best_val_recall_at_1,
        "stopped_early": result.stopped_early,
        "best_checkpoint": result.best_checkpoint,
        "latest_checkpoint": result.latest_checkpoint,
        "hardware": {"raw_value": result.hardware, "type": "json"},
        "precision": result.hardware["precision"],
        "device": result.hardware["name"],
        "skipped_images": len(result.skipped_images),
    }
    if result.skipped_images:
        listed = [f"- {path} ({why})" for path, why in result.skipped_images.items()]
        more = [f"- and {len(listed) - 50:,} more"] if len(listed) > 50 else []
        metadata["skipped_image_files"] = {"raw_value": "\n".join(listed[:50] + more), "type": "md"}
    for key, value in result.final_metrics.items():
        if key not in ("epoch", "skipped_images"):  # the run's total is above
            metadata[f"final_{key}"] = value
    return {k: v for k, v in metadata.items() if v is not None}


@contextmanager
def _reporter(enabled: bool) -> Iterator[PipesContext | None]:
    """The Dagster Pipes context on rank 0 of a Pipes-launched process, else None."""
    if not (enabled and PipesEnvVarParamsLoader().is_dagster_pipes_process()):
        yield None
        return
    with open_dagster_pipes() as pipes:
        yield pipes


class _StopRequest:
    """Set by SIGINT/SIGTERM, polled by the training loop between steps."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self) -> bool:
        return self.signal_name is not None

    def handle(self, signum: int, _frame: object) -> None:
        # Only record it: printing here could re-enter a print the main thread is in the middle of.
        self.signal_name = signal.Signals(signum).name
        # A second signal should not wait for the end of the step.
        signal.signal(signum, signal.SIG_DFL)


def _hardware(path: str | None, config: PipelineConfig) -> HardwareSettings:
    if path is not None:
        return HardwareSettings.read_json(
            path, remedy="pass --hardware-json a file HardwareSettings.write_json wrote, or omit it"
        )
    training = config.training
    return resolve_hardware(
        detect_device_props(int(os.environ.get("LOCAL_RANK", "0"))),
        os.cpu_count() or 1,
        use_bf16=training.use_bf16,
        num_workers=training.num_workers,
        accum_steps=training.gradient_accumulation_steps,
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-json", required=True, help="PipelineConfig.write_json's file")
    parser.add_argument("--data-dir", required=True, help="folder the image_path column is under")
    parser.add_argument("--splits-dir", required=True, help="folder with train.csv and val.csv")
    parser.add_argument("--checkpoint-dir", required=True, help="where checkpoints are written")
    parser.add_argument(
        "--artifacts-dir",
        help="folder with manifest.parquet, to check every photo against before training "
        "(without it: only that each photo exists)",
    )
    parser.add_argument(
        "--hardware-json", help="HardwareSettings.write_json's file (default: detect)"
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar per epoch")
    parser.add_argument("--error-file", help="where to write a user error's one-line message")
    return parser.parse_args(argv)


def _note(log: Callable[[str], None], message: str | None) -> None:
    if message:
        log(message)


def _print(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""``imgcls split|train|index|pipeline``: materialize the command's Dagster assets in this process,
exactly as the UI would, and print what they made."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg

from imgcls_pipeline.cli.flags import read_command_line, refuse_arguments
from imgcls_pipeline.cli.pool_watch import PoolWatch, launcher_tag, pools_of
from imgcls_pipeline.cli.printing import (
    print_evaluation,
    print_split_summary,
    print_training_summary,
)
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings import PipelineConfig
from imgcls_pipeline.definitions import defs
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline.defs.run_config import run_config_for

# The assets each command materializes.
ASSETS = {
    "split": ["image_manifest", "id_groups", "splits"],
    "train": ["trained_checkpoint"],
    "index": ["embeddings", "faiss_index", "evaluation"],
    "pipeline": [
        "image_manifest",
        "id_groups",
        "splits",
        "trained_checkpoint",
        "embeddings",
        "faiss_index",
        "evaluation",
    ],
}
# Steps whose messages reach the terminal while they run (training prints its own log lines).
LIVE_STEPS = {"trained_checkpoint"}


def run(command: str, tokens: Sequence[str]) -> int:
    line = read_command_line(tokens, command)
    refuse_arguments(line)
    paths, _ = materialize(command, line.config, line.options)
    if command == "split":
        print_split_summary(paths)
    if command in ("train", "pipeline"):
        print_training_summary(paths)
    if command in ("index", "pipeline"):
        print_evaluation(paths, line.config.evaluation.eval_splits)
    return 0


def materialize(
    command: str, config: PipelineConfig, folders: Mapping[str, str]
) -> tuple[PipelinePaths, dg.ExecuteInProcessResult]:
    """Materialize the command's assets in this process, exactly as the UI would.

    Dagster's own console log (step events, stack traces) is kept out of the terminal; the run's
    messages are printed plainly afterwards, and a user error comes back as that error.
    """
    paths = PipelinePaths.from_env(**folders)
    run_config = run_config_for(config, ASSETS[command])
    run_config["loggers"] = {"console": {"config": {"log_level": "CRITICAL"}}}
    instance = _instance()
    watch = PoolWatch(instance, pools_of(defs, ASSETS[command])).begin()  # says so if it waits
    result = dg.materialize(
        list(defs.assets) + list(defs.asset_checks),
        selection=dg.AssetSelection.assets(*ASSETS[command]),
        resources={**defs.resources, "paths": paths},
        run_config=run_config,
        instance=instance,
        tags={"imgcls/command": command, **launcher_tag()},
        raise_on_error=False,
    )
    watch.end()
    for entry in instance.all_logs(result.run_id):
        if entry.step_key in LIVE_STEPS:
            continue  # already shown while it ran
        # ERROR-level entries are Dagster's own notes on skipped steps; the failure is raised below.
        if not entry.is_dagster_event and logging.INFO <= entry.level < logging.ERROR:
            print(f"[{entry.step_key or 'run'}] {entry.user_message}", file=sys.stderr)
    if not result.success:
        raise _run_failure(result)
    return paths, result


def _instance() -> dg.DagsterInstance:
    if not os.environ.get("DAGSTER_HOME") and Path("dagster.yaml").is_file():
        os.environ["DAGSTER_HOME"] = str(Path.cwd())
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _run_failure(result: dg.ExecuteInProcessResult) -> BaseException:
    """The UserError that failed the run, as raised; KeyboardInterrupt for Ctrl-C; any other
    failure with its stack trace."""
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            if error.cls_name == "UserError":
                return UserError(error.message.split(": ", 1)[-1].strip())
            if error.cls_name in ("DagsterExecutionInterruptedError", "KeyboardInterrupt"):
                return KeyboardInterrupt()
            error = error.cause or error.context
        return RuntimeError(event.step_failure_data.error.to_string())
    return RuntimeError("the Dagster run failed; see its log in the Dagster UI")

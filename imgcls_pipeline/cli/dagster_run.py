"""Run a command's named Dagster job in this process, exactly as the UI would, with its messages
printed as they happen: each step's log lines, then one line with the step's time."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from imgcls_pipeline.cli.pool_watch import PoolWatch, launcher_tag, pools_of
from imgcls_pipeline.core import progress
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings import PipelineConfig
from imgcls_pipeline.definitions import defs
from imgcls_pipeline.defs.jobs import COMMAND_ASSETS
from imgcls_pipeline.defs.resources import PipelinePaths
from imgcls_pipeline.defs.run_config import run_config_for

# Steps whose messages reach the terminal while they run (training prints its own log lines).
LIVE_STEPS = {"trained_checkpoint"}
# The UI's Overview timeline and Jobs list show a job's runs by this hidden tag, "repository @
# code location", which a run launched from the UI gets from its origin. An in-process run has no
# origin, so it is labelled as the code location `dagster dev` loads (`-m imgcls_pipeline.definitions`
# or workspace.yaml: location named after the module; a Definitions object is "__repository__").
REPOSITORY_LABEL_TAG = ".dagster/repository"
REPOSITORY_LABEL = "__repository__@imgcls_pipeline.definitions"


def materialize(
    command: str, config: PipelineConfig, folders: Mapping[str, str]
) -> tuple[PipelinePaths, dg.ExecuteInProcessResult]:
    """Run the job named ``command`` (see ``defs/jobs.py``) with ``config`` and ``folders``.

    Dagster's own console log (step events, stack traces) is kept out of the terminal; the run's
    messages are printed as they come, and a user error comes back as that error.
    """
    paths = PipelinePaths.from_env(**folders)
    run_config = run_config_for(config, COMMAND_ASSETS[command])
    run_config["resources"] = {"paths": {"config": paths.model_dump()}}
    run_config["loggers"] = {"console": {"config": {"log_level": "CRITICAL"}}}
    # Bars or plain lines: the step and the training process see Dagster's capture pipe.
    os.environ.setdefault(progress.TERMINAL_ENV, "1" if progress.on_terminal() else "0")
    instance = _instance()
    run_id = str(uuid.uuid4())
    instance.add_event_listener(run_id, print_event)
    # Says so, on the terminal and in the run's log, while the run waits for the gpu pool.
    watch = PoolWatch(instance, pools_of(defs, COMMAND_ASSETS[command])).begin()
    try:
        result = defs.resolve_job_def(command).execute_in_process(
            run_config=run_config,
            instance=instance,
            tags={
                "imgcls/command": command,
                **launcher_tag(),
                REPOSITORY_LABEL_TAG: REPOSITORY_LABEL,
            },
            raise_on_error=False,
            run_id=run_id,
        )
    finally:
        watch.end()
    if not result.success:
        raise _run_failure(result)
    return paths, result


def print_event(entry: dg.EventLogEntry) -> None:
    """A step's own log line, or one line when a step ends, on stderr as the run goes."""
    if not entry.is_dagster_event:
        # ERROR-level entries are Dagster's own notes on skipped steps; the failure is raised.
        if entry.step_key not in LIVE_STEPS and logging.INFO <= entry.level < logging.ERROR:
            _print(f"[{entry.step_key or 'run'}] {entry.user_message}")
        return
    event = entry.get_dagster_event()
    if event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
        seconds = getattr(event.event_specific_data, "duration_ms", None)
        took = f" in {seconds / 1000:.1f} s" if seconds is not None else ""
        _print(f"[{event.step_key}] {_verdict(event)}{took}")


def _verdict(event: dg.DagsterEvent) -> str:
    if event.event_type == dg.DagsterEventType.STEP_SUCCESS:
        return "done"
    # The step's own work finished (a rejected challenger stays unserved, by design); a blocking
    # check of it failed, and the sentence after the run says which and why.
    if event.step_failure_data.error.cls_name == "DagsterAssetCheckFailedError":
        return "done, but a blocking check failed (see below)"
    return "failed"


def _print(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _instance() -> dg.DagsterInstance:
    if not os.environ.get("DAGSTER_HOME") and Path("dagster.yaml").is_file():
        os.environ["DAGSTER_HOME"] = str(Path.cwd())
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


class BlockingCheckFailed(UserError):
    """A blocking asset check failed (a rejected challenger, val Recall@1 under the floor): the
    work ran and nothing wrong was served, but the run did not deliver what was asked. Carries
    the run's result, whose metadata says why (the gate's decision table)."""

    def __init__(self, sentence: str, result: dg.ExecuteInProcessResult) -> None:
        super().__init__(sentence)
        self.result = result


def failed_blocking_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    """One sentence per blocking check that failed in the run: its own description."""
    return [
        evaluation.description
        or f"{evaluation.asset_key.to_user_string()}: check {evaluation.check_name} failed."
        for evaluation in result.get_asset_check_evaluations()
        if not evaluation.passed
        and evaluation.blocking
        and evaluation.severity == dg.AssetCheckSeverity.ERROR
    ]


def _run_failure(result: dg.ExecuteInProcessResult) -> BaseException:
    """The UserError that failed the run, as raised; a failed blocking check as its sentence;
    KeyboardInterrupt for Ctrl-C; any other failure with its stack trace."""
    failed_checks = failed_blocking_checks(result)
    if failed_checks:
        return BlockingCheckFailed(" ".join(failed_checks), result)
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

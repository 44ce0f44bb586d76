"""``imgcls split|train|index|pipeline``: run the command's named Dagster job in this process,
exactly as the UI would, and print what it made. Folders, tables and weights are checked first,
so a mistake is reported before Dagster (seconds to import) starts."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from imgcls_pipeline.cli.flags import read_command_line, refuse_arguments
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.folders import Folders
from imgcls_pipeline.core.settings import PipelineConfig

if TYPE_CHECKING:
    import dagster as dg

    from imgcls_pipeline.defs.resources import PipelinePaths


def run(command: str, tokens: Sequence[str]) -> int:
    line = read_command_line(tokens, command)
    refuse_arguments(line)
    # The checks read tables (pandas): only once the command line itself is right.
    from imgcls_pipeline.cli.preflight import check_command

    check_command(command, line.config, Folders.from_env(**line.options))
    try:
        paths, result = materialize(command, line.config, line.options)
    except UserError as failure:
        # A rejected challenger or a missed floor: the decision first, then the one sentence.
        failed_run = getattr(failure, "result", None)
        if failed_run is None:
            raise
        from imgcls_pipeline.cli.gate_printing import print_gate_decision

        print_gate_decision(failed_run)
        print(f"error: {failure}", file=sys.stderr)
        return 1
    from imgcls_pipeline.cli.gate_printing import print_gate_decision

    print_gate_decision(result)
    from imgcls_pipeline.cli.printing import (
        print_evaluation,
        print_split_summary,
        print_training_summary,
    )

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
    """Run the job named ``command`` with these settings and folders (see ``dagster_run``)."""
    # Dagster: only once the checks have passed.
    from imgcls_pipeline.cli.dagster_run import materialize as run_job

    return run_job(command, config, folders)

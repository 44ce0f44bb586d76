"""``imgcls``: the original specification's scripts as one command over the same Dagster assets.

    imgcls demo                                   # built-in example, whole pipeline, on the CPU
    imgcls split    --data_dir ./data --output_dir ./splits
    imgcls train    --data_dir ./data --splits_dir ./splits [--fresh]
    imgcls index    --data_dir ./data --splits_dir ./splits   # embeddings + Faiss index + val
    imgcls evaluate --checkpoint ./checkpoints/best_model.pt --split val|test
    imgcls predict  --checkpoint ./checkpoints/best_model.pt PHOTO_OR_FOLDER...

Every setting of ``config.py`` is also a flag: ``--seed 7``, ``--min_image_size=128``,
``--class_names a,b``, ``--use_bf16=false``. Runs are recorded in the Dagster instance of
``DAGSTER_HOME`` (or of the current folder when it holds ``dagster.yaml``), so ``dagster dev``
shows what the command materialized.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings import PipelineConfig, apply_overrides, field_index

_ALL_FOLDERS = {
    "data_dir": "data_dir",
    "splits_dir": "splits_dir",
    "checkpoint_dir": "checkpoint_dir",
    "artifacts_dir": "artifacts_dir",
}
# Folder flags of each command (as the original scripts named them) → PipelinePaths field.
FOLDER_FLAGS = {
    "split": {**_ALL_FOLDERS, "output_dir": "splits_dir"},
    "train": _ALL_FOLDERS,
    "index": _ALL_FOLDERS,
    "pipeline": _ALL_FOLDERS,
    "demo": {},
}
# The assets each asset-backed command materializes.
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
COMMANDS = sorted([*ASSETS, "demo", "evaluate", "predict"])


def parse_flags(
    tokens: Sequence[str], command: str, extra_flags: Sequence[str] = ()
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Split ``--name=value`` / ``--name value`` / bare boolean ``--name`` tokens into
    (folder flags, setting overrides, positional arguments). Names in ``extra_flags`` count as
    folder-like flags. Unknown names are an error listing the valid ones."""
    folders: dict[str, str] = {}
    settings: dict[str, str] = {}
    positional: list[str] = []
    folder_flags = {**FOLDER_FLAGS.get(command, {}), **{name: name for name in extra_flags}}
    valid_settings = set(field_index()) | {"accum_steps"}
    position = 0
    while position < len(tokens):
        token = tokens[position]
        if not token.startswith("--") or token == "--":
            positional.append(token)
            position += 1
            continue
        name, has_value, value = token[2:].partition("=")
        if not has_value:
            following = tokens[position + 1] if position + 1 < len(tokens) else None
            if following is None or following.startswith("--"):
                value = "true"  # a bare flag such as --fresh
            else:
                value = following
                position += 1
        position += 1
        if name in folder_flags:
            folders[folder_flags[name]] = value
        elif name in valid_settings:
            settings[name] = value
        else:
            close = difflib.get_close_matches(name, [*folder_flags, *valid_settings], n=2)
            hint = f" Did you mean {' or '.join('--' + c for c in close)}?" if close else ""
            valid = sorted(folder_flags) + sorted(valid_settings)
            raise UserError(
                f"Unknown flag --{name} for `imgcls {command}`.{hint} Valid flags: "
                f"{', '.join('--' + v for v in valid)}."
            )
    return folders, settings, positional


def _instance():
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME") and Path("dagster.yaml").is_file():
        os.environ["DAGSTER_HOME"] = str(Path.cwd())
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def materialize(command: str, config: PipelineConfig, folders: dict[str, str]):
    """Materialize the command's assets in this process, exactly as the UI would.

    Dagster's own console log (step events, stack traces) is kept out of the terminal; the run's
    messages are printed plainly afterwards, and a user error comes back as that error.
    """
    import dagster as dg

    from imgcls_pipeline.definitions import defs
    from imgcls_pipeline.defs.resources import PipelinePaths
    from imgcls_pipeline.defs.run_config import run_config_for

    paths = PipelinePaths.from_env(**folders)
    run_config = run_config_for(config, ASSETS[command])
    run_config["loggers"] = {"console": {"config": {"log_level": "CRITICAL"}}}
    instance = _instance()
    result = dg.materialize(
        list(defs.assets) + list(defs.asset_checks),
        selection=dg.AssetSelection.assets(*ASSETS[command]),
        resources={**defs.resources, "paths": paths},
        run_config=run_config,
        instance=instance,
        tags={"imgcls/command": command},
        raise_on_error=False,
    )
    for entry in instance.all_logs(result.run_id):
        if entry.step_key in LIVE_STEPS:
            continue  # already shown while it ran
        # ERROR-level entries are Dagster's own notes on skipped steps; the failure is raised below.
        if not entry.is_dagster_event and logging.INFO <= entry.level < logging.ERROR:
            print(f"[{entry.step_key or 'run'}] {entry.user_message}", file=sys.stderr)
    if not result.success:
        raise _run_failure(result)
    return paths, result


def _run_failure(result) -> BaseException:
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


def _print_split_summary(paths) -> None:
    import pandas as pd

    from imgcls_pipeline.core.data.split_files import read_split
    from imgcls_pipeline.core.data.splitting import SPLITS, count_table

    tables = {split: read_split(paths.splits, split) for split in SPLITS}
    excluded = pd.read_csv(paths.splits / "excluded.csv", dtype=str, keep_default_na=False)
    print(f"\nSplits written to {paths.splits}/ (IDs per class and split):")
    print(count_table(tables).to_string())
    images = {split: len(table) for split, table in tables.items()}
    print("images: " + ", ".join(f"{split} {count}" for split, count in images.items()))
    if len(excluded):
        reasons = excluded["reason"].value_counts()
        print(
            f"excluded {len(excluded)} file(s), see excluded.csv: "
            + ", ".join(f"{reason} {count}" for reason, count in reasons.items())
        )


def _print_training_summary(paths) -> None:
    import pandas as pd

    metrics_file = paths.checkpoints / "metrics.csv"
    if metrics_file.is_file():
        history = pd.read_csv(metrics_file)
        print(f"\nTraining history ({metrics_file}):")
        print(history.tail(10).to_string(index=False))
    print(f"best model: {paths.checkpoints / 'best_model.pt'}")


def _print_evaluation(paths, splits: list[str]) -> None:
    import json

    from imgcls_pipeline.core.search.report import metrics_markdown_table

    for split in splits:
        report_file = paths.artifacts / "evaluation" / f"{split}.json"
        if report_file.is_file():
            print(f"\n{split} ({report_file}):")
            print(metrics_markdown_table(json.loads(report_file.read_text())))


def run(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="imgcls", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("flags", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from imgcls_pipeline.demo import run_demo

        return run_demo(args.flags, materialize)
    if args.command in ("evaluate", "predict"):
        from imgcls_pipeline import commands

        return getattr(commands, args.command)(args.flags)
    folders, settings, positional = parse_flags(args.flags, args.command)
    if positional:
        raise UserError(f"Unexpected argument '{positional[0]}': flags look like --name=value.")
    config = apply_overrides(PipelineConfig(), settings)
    paths, _ = materialize(args.command, config, folders)
    if args.command == "split":
        _print_split_summary(paths)
    if args.command in ("train", "pipeline"):
        _print_training_summary(paths)
    if args.command in ("index", "pipeline"):
        _print_evaluation(paths, config.evaluation.eval_splits)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is kept (training resumes from latest_model.pt); "
            "run the same command again to carry on.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())

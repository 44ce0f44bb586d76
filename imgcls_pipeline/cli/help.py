"""``imgcls -h``, ``imgcls COMMAND -h`` and ``imgcls help COMMAND``: the commands, and each
command's own flags with their type, default and description (a setting's from its field in
``core/settings.py``)."""

from __future__ import annotations

import textwrap

from imgcls_pipeline.cli.flags import COMMAND_FLAGS, COMMAND_SETTINGS, SETTINGS_FILE_FLAG
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.folders import FOLDER_ENV_VARS
from imgcls_pipeline.core.project_settings import PROJECT_FILE, read_project_settings
from imgcls_pipeline.core.settings_help import grouped, value_text

# One line per command, in the order a new user meets them.
COMMAND_SUMMARIES: dict[str, str] = {
    "demo": "Run the whole pipeline on built-in example photos, on the CPU, in a few minutes.",
    "init": "Write a commented imgcls.yaml (every setting, its description and default).",
    "split": "Scan the photo folder and write train/val/test tables (an ID stays in one split).",
    "train": "Train the embedding model on the split tables; resumes from latest_model.pt.",
    "index": "Embed the train split, build the Faiss index and evaluate val (eval_splits).",
    "pipeline": "split, train and index in one run.",
    "evaluate": "Score the served model (or any checkpoint) on val or test, without Dagster.",
    "predict": "Classify photos or folders with the served model and index, without Dagster.",
    "models": "List the model versions with their scores; * marks the one served.",
    "promote": "Serve a model version by hand (rollback or forward), rebuilding its index.",
}
ARGUMENTS: dict[str, str] = {
    "predict": " PHOTO_OR_FOLDER...",
    "init": " [DIR]",
    "promote": " VERSION",
}
# Commands that take no flags, only their own arguments, described here.
OWN_ARGUMENTS_ONLY = {
    "init": "Write a commented imgcls.yaml (every setting, its description and default) and, when "
    "missing, a dagster.yaml into DIR, the project folder (default: $DAGSTER_HOME, else the current "
    "folder). An existing imgcls.yaml is never overwritten.",
}
_FOLDER_HELP = {
    "data_dir": "Folder with one sub-folder of photos per class.",
    "splits_dir": "Folder of the split tables (train.csv, val.csv, test.csv, excluded.csv).",
    "checkpoint_dir": "Folder of best_model.pt, latest_model.pt and metrics.csv.",
    "artifacts_dir": "Folder of the manifest, embeddings, index and evaluation reports.",
    "models_dir": "Folder of the model versions (v0001, v0002, …) and decisions.csv.",
}
# (metavar, description) of each command option; (command, flag) entries override by command.
OPTION_HELP: dict[str | tuple[str, str], tuple[str, str]] = {
    **{
        name: ("DIR", f"{text} Default: {default} (or ${env})")
        for name, text in _FOLDER_HELP.items()
        for env, default in [FOLDER_ENV_VARS[name]]
    },
    "output_dir": ("DIR", "Same as --splits_dir: where the split tables are written."),
    "dir": (
        "DIR",
        "Folder for the demo's photos, splits, checkpoints and artifacts. Default: demo",
    ),
    "checkpoint": (
        "FILE",
        "Model checkpoint, for ad-hoc use. Default: the served model version (else best_model.pt "
        "in the checkpoint folder)",
    ),
    "split": ("val|test", "Split to evaluate against the train gallery. Default: val"),
    "index_dir": (
        "DIR",
        "Saved index (gallery.faiss, gallery.csv). Default: the served bundle's index",
    ),
    "open_set_threshold": (
        "float",
        "Answer 'unknown' when the nearest gallery photo's cosine similarity is below this "
        "(-1 to 1). Default: off",
    ),
    ("evaluate", "output"): ("FILE", "Also write the metrics as a JSON report to FILE."),
    ("predict", "output"): (
        "FILE",
        "Also write the predictions to FILE: .csv (flat columns) or .json (nested).",
    ),
    SETTINGS_FILE_FLAG: ("FILE", "YAML file of settings (name: value lines); flags win over it."),
}
_WIDTH = 100
_FLAG_COLUMN = 32


def overview() -> str:
    width = max(len(c) for c in COMMAND_SUMMARIES) + 2
    lines = [
        "usage: imgcls COMMAND [FLAGS]",
        "",
        "Retrieval image classification (EfficientNetV2 + ArcFace + Faiss) over Dagster assets.",
        "",
        "commands:",
        *(f"  {c:<{width}}{text}" for c, text in COMMAND_SUMMARIES.items()),
        f"  {'help':<{width}}Show a command's flags, e.g. `imgcls help train`.",
        "",
        "`imgcls COMMAND --help` lists the command's flags with their type and default. Every",
        "setting is a flag: --seed 7, --class_names a,b, --use_bf16=false; --settings FILE reads",
        "them from a YAML file (flags win). Runs are recorded in the Dagster instance of",
        "DAGSTER_HOME (or of the current folder when it holds dagster.yaml): `dagster dev` shows",
        "them.",
    ]
    return "\n".join(lines)


def command_help(command: str) -> str:
    if command in OWN_ARGUMENTS_ONLY:
        usage = f"usage: imgcls {command}{ARGUMENTS[command]}"
        return f"{usage}\n\n{textwrap.fill(OWN_ARGUMENTS_ONLY[command], _WIDTH)}"
    lines = [f"usage: imgcls {command} [FLAGS]{ARGUMENTS.get(command, '')}", ""]
    if command in COMMAND_SUMMARIES:
        lines += [COMMAND_SUMMARIES[command], ""]
    project = _project_values() if command not in ("demo", "init") else {}
    lines.append("Options:")
    for flag in [*COMMAND_FLAGS.get(command, {}), SETTINGS_FILE_FLAG]:
        metavar, text = OPTION_HELP.get((command, flag)) or OPTION_HELP.get(flag, ("VALUE", ""))
        lines += _entry(f"--{flag} {metavar}", text + project.get(flag, ""))
    for group, items in grouped(COMMAND_SETTINGS.get(command, ())).items():
        lines += ["", f"{group}:"]
        for item in items:
            lines += _entry(
                f"--{item.name} {item.type}",
                f"{item.description} Default: {item.default}{project.get(item.name, '')}",
            )
    return "\n".join(lines)


def _project_values() -> dict[str, str]:
    """`` (imgcls.yaml: 12)`` by setting or folder the project's imgcls.yaml sets: the value a
    command uses without the flag. Nothing when there is no such file or it has a mistake (the
    command itself reports that)."""
    try:
        project = read_project_settings()
    except UserError:
        return {}
    values = {**project.folders, **project.settings}
    return {name: f" ({PROJECT_FILE}: {value_text(value)})" for name, value in values.items()}


def _entry(flag: str, text: str) -> list[str]:
    """``  --flag TYPE   text`` wrapped under its column; a long flag gets its own line."""
    indent = " " * _FLAG_COLUMN
    head = f"  {flag}"
    if len(head) < _FLAG_COLUMN - 1:
        first = head.ljust(_FLAG_COLUMN) + text
        return textwrap.wrap(first, _WIDTH, subsequent_indent=indent)
    return [head, *textwrap.wrap(text, _WIDTH, initial_indent=indent, subsequent_indent=indent)]

"""The command line of every ``imgcls`` command: folder flags, setting flags and arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.project_settings import command_line_settings
from imgcls_pipeline.core.settings import PipelineConfig
from imgcls_pipeline.core.settings_errors import did_you_mean
from imgcls_pipeline.core.settings_sources import flag_names

_FOLDERS = {name: name for name in ("data_dir", "splits_dir", "checkpoint_dir", "artifacts_dir")}
# Each command's own flags (as the original scripts named them) → the option they set.
COMMAND_FLAGS: dict[str, dict[str, str]] = {
    "split": {**_FOLDERS, "output_dir": "splits_dir"},
    "train": _FOLDERS,
    "index": _FOLDERS,
    "pipeline": _FOLDERS,
    "demo": {"dir": "dir"},
    "evaluate": {
        name: name for name in ("checkpoint", "split", "data_dir", "splits_dir", "output")
    },
    "predict": {name: name for name in ("checkpoint", "index_dir", "artifacts_dir", "output")},
}
# A YAML file of settings (name: value), for every command; flags on the command line win.
SETTINGS_FILE_FLAG = "settings"


@dataclass
class CommandLine:
    options: dict[str, str]  # the command's own flags, by the option they set
    config: PipelineConfig
    positional: list[str]


def parse_flags(
    tokens: Sequence[str], command: str
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Split ``--name=value`` / ``--name value`` / bare boolean ``--name`` tokens into
    (the command's options, setting flags, positional arguments). Unknown names are an error
    listing the valid ones."""
    option_flags = {**COMMAND_FLAGS[command], SETTINGS_FILE_FLAG: SETTINGS_FILE_FLAG}
    valid_settings = flag_names()
    options: dict[str, str] = {}
    settings: dict[str, str] = {}
    positional: list[str] = []
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
        if name in option_flags:
            options[option_flags[name]] = value
        elif name in valid_settings:
            settings[name] = value
        else:
            hint = did_you_mean(name, [*option_flags, *valid_settings], "--")
            valid = sorted(option_flags) + valid_settings
            raise UserError(
                f"Unknown flag --{name} for `imgcls {command}`.{hint} Valid flags: "
                f"{', '.join('--' + v for v in valid)}."
            )
    return options, settings, positional


def read_command_line(
    tokens: Sequence[str],
    command: str,
    defaults: Mapping[str, Any] | None = None,
    *,
    project: bool = True,
) -> CommandLine:
    """The options and the settings: defaults < ``defaults`` < the project's imgcls.yaml (unless
    ``project`` is false) < ``--settings FILE`` < flags; the file's folders fill options."""
    options, flags, positional = parse_flags(tokens, command)
    config, file_folders = command_line_settings(
        options.pop(SETTINGS_FILE_FLAG, None), flags, base=defaults, project=project
    )
    return CommandLine({**file_folders, **options}, config, positional)


def refuse_arguments(line: CommandLine) -> None:
    if line.positional:
        raise UserError(
            f"Unexpected argument '{line.positional[0]}': flags look like --name=value."
        )

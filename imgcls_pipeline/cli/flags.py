"""The command line of every ``imgcls`` command: folder flags, setting flags and arguments.

Each command takes the settings its work reads (``COMMAND_SETTINGS``) and its own options
(``COMMAND_FLAGS``); any other flag is an error naming the commands that take it, so a setting
is never silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from imgcls_pipeline.core import settings as s
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.project_settings import command_line_settings
from imgcls_pipeline.core.settings import PipelineConfig
from imgcls_pipeline.core.settings_errors import did_you_mean
from imgcls_pipeline.core.settings_sources import ALIASES

_FOLDERS = {
    name: name
    for name in ("data_dir", "splits_dir", "checkpoint_dir", "artifacts_dir", "models_dir")
}
# Each command's own flags (as the original scripts named them) → the option they set.
COMMAND_FLAGS: dict[str, dict[str, str]] = {
    "split": {**_FOLDERS, "output_dir": "splits_dir"},
    "train": _FOLDERS,
    "index": _FOLDERS,
    "pipeline": _FOLDERS,
    "demo": {"dir": "dir"},
    "evaluate": {
        name: name
        for name in (
            "checkpoint",
            "split",
            "data_dir",
            "splits_dir",
            "artifacts_dir",
            "models_dir",
            "output",
        )
    },
    "models": {name: name for name in ("models_dir", "artifacts_dir")},
    "promote": {name: name for name in ("data_dir", "splits_dir", "artifacts_dir", "models_dir")},
    "predict": {
        name: name
        for name in (
            "checkpoint",
            "index_dir",
            "checkpoint_dir",
            "artifacts_dir",
            "models_dir",
            "output",
            "open_set_threshold",
        )
    },
}
# A YAML file of settings (name: value), for every command; flags on the command line win.
SETTINGS_FILE_FLAG = "settings"


def _fields(*groups: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for group in groups for name in group.model_fields)


# The settings each command's work reads: the run config of the assets it materializes (a test
# pins these against defs/run_config.py), or what evaluate and predict use.
_SPLIT = _fields(s.PhotoSelection, s.SplitRatios, s.SeedSetting)
_TRAIN = _fields(
    s.ModelConfig,
    s.TrainingConfig,
    s.AugmentationConfig,
    s.ImageSizeSetting,
    s.SeedSetting,
    s.RecallSetting,
    s.ImageCacheSetting,
)
_INDEX = _fields(
    s.EmbeddingBatchSetting,
    s.FlipTtaSetting,
    s.IndexTypeSetting,
    s.RecallSetting,
    s.ReportSettings,
    s.RerankSettings,
    s.ImageCacheSetting,
)
_SEARCH = _fields(s.RerankSettings) | {"top_k", "embedding_batch_size"}
# The gate (served_model): its rule, and how it builds each model's bundle to score it.
_GATE = _fields(s.EmbeddingBatchSetting, s.FlipTtaSetting, s.IndexTypeSetting) | {
    "promotion_tolerance",
    "min_val_recall_at_1",
}
COMMAND_SETTINGS: dict[str, frozenset[str]] = {
    "split": _SPLIT,
    "train": _TRAIN | _GATE,
    "index": _INDEX,
    "pipeline": _SPLIT | _TRAIN | _GATE | _INDEX,
    "demo": _SPLIT | _TRAIN | _GATE | _INDEX,
    "evaluate": _SEARCH | _fields(s.RecallSetting, s.FlipTtaSetting),
    "models": frozenset(),
    # What building and evaluating the version's bundle reads, as `imgcls index`.
    "promote": _INDEX,
    # The index decides flip_tta for predict's queries (they must be embedded as the gallery was).
    "predict": _SEARCH,
}


@dataclass
class CommandLine:
    options: dict[str, str]  # the command's own flags, by the option they set
    config: PipelineConfig
    positional: list[str]


def command_flags(command: str) -> list[str]:
    """Every flag ``command`` takes, without the dashes: options first, then settings."""
    settings = COMMAND_SETTINGS.get(command, frozenset())
    aliases = [alias for alias, name in ALIASES.items() if name in settings]
    return [*COMMAND_FLAGS.get(command, {}), SETTINGS_FILE_FLAG, *sorted([*settings, *aliases])]


def commands_taking(flag: str) -> list[str]:
    name = ALIASES.get(flag, flag)
    return [
        command
        for command in COMMAND_FLAGS
        if flag in COMMAND_FLAGS[command] or name in COMMAND_SETTINGS.get(command, ())
    ]


def parse_flags(
    tokens: Sequence[str], command: str
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Split ``--name=value`` / ``--name value`` / bare boolean ``--name`` tokens into
    (the command's options, setting flags, positional arguments). A flag the command does not
    take is an error naming the commands that take it, or the closest of its own."""
    option_flags = {**COMMAND_FLAGS.get(command, {}), SETTINGS_FILE_FLAG: SETTINGS_FILE_FLAG}
    own_settings = set(command_flags(command)) - set(option_flags)
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
        elif name in own_settings:
            settings[name] = value
        else:
            raise UserError(_not_a_flag_of(command, name))
    return options, settings, positional


def _not_a_flag_of(command: str, name: str) -> str:
    others = commands_taking(name)
    see = f"see `imgcls {command} --help` for its flags."
    if not others:
        hint = did_you_mean(name, command_flags(command), "--")
        return f"Unknown flag --{name} for `imgcls {command}`.{hint} S{see[1:]}"
    why = ""
    if (command, name) == ("predict", "flip_tta"):
        why = " (predict embeds photos as the index's gallery was, which its info.json records)"
    elif ALIASES.get(name, name) in _SPLIT and command != "split":
        # The split tables fix the photos and classes that training and search use.
        why = (
            f" (the split tables decide which photos and classes `imgcls {command}` uses: "
            f"pass --{name} to `imgcls split`, which rewrites them)"
        )
    return f"--{name} is a flag of {_commands_text(others)}, not of `imgcls {command}`{why}; {see}"


def _commands_text(commands: Iterable[str]) -> str:
    named = [f"`imgcls {c}`" for c in commands]
    return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"


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

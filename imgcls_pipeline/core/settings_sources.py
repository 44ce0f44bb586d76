"""Where settings come from: the defaults, settings files, flags typed by a user, in that order.

Every source ends in ``PipelineConfig.from_flat``, so the model in ``core/settings.py`` is the
only validation; this module turns text into values of the field's type, and checks each value a
file sets on its own so that a bad one is reported with the file's name.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from imgcls_pipeline.core.errors import UserError, describe
from imgcls_pipeline.core.settings import SECTIONS, PipelineConfig, setting_fields
from imgcls_pipeline.core.settings_errors import did_you_mean, value_sentence, without_none

# Spellings the original specification's train.py used on its command line.
ALIASES = {"accum_steps": "gradient_accumulation_steps"}
_NONE_WORDS = ("none", "null", "")
# Folders are deployment settings, not pipeline settings (core/folders.py), but a settings file
# may name them too.
FOLDER_NAMES = ("data_dir", "splits_dir", "checkpoint_dir", "artifacts_dir", "models_dir")


@dataclass(frozen=True)
class SettingsFile:
    """What one settings file sets: folders (relative ones made relative to the file's folder) and
    settings, each value already of its field's type and within its limits."""

    path: Path | None = None
    folders: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def flag_names() -> list[str]:
    return sorted([*setting_fields(), *ALIASES])


def parse_setting_flags(flags: Mapping[str, str]) -> dict[str, Any]:
    """``{"seed": "7", "class_names": "a,b"}`` (text, as typed) → values by setting name."""
    fields = setting_fields()
    values: dict[str, Any] = {}
    given_as: dict[str, str] = {}  # setting → the flag that set it, to refuse an alias and its name
    for flag, text in flags.items():
        name = ALIASES.get(flag, flag)
        if name not in fields:
            raise UserError(
                f"Unknown flag --{flag}.{did_you_mean(name, flag_names(), '--')} Valid settings: "
                f"{', '.join('--' + n for n in flag_names())}."
            )
        if name in given_as:
            raise UserError(
                f"--{given_as[name]} and --{flag} set the same setting ({name}); pass only one."
            )
        given_as[name] = flag
        values[name] = parse_flag(flag, text, fields[name][1])
    return values


def parse_flag(flag: str, text: str, field: FieldInfo) -> Any:
    """Pydantic's lax parsing of the field's type ("7", "false", "1e-4"), plus what a command line
    needs: a list is written ``a,b`` and an optional setting is unset with ``none``."""
    inner, optional = without_none(field.annotation)
    if optional and text.strip().lower() in _NONE_WORDS:
        return None
    value: Any = text
    if typing.get_origin(inner) is list:
        value = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return TypeAdapter(field.annotation).validate_python(value)
    except ValidationError as error:
        problem = error.errors()[0]["type"]
        raise UserError(value_sentence(f"--{flag}", field, problem, f"'{text}'")) from None


def read_settings_file(path: str | Path) -> SettingsFile:
    """A YAML file of ``name: value`` lines, as the flags (``seed: 7``, ``class_names: [a, b]``,
    ``data_dir: photos``); the sections of ``PipelineConfig.to_dict()`` (``training:
    {total_epochs: 4}``) are read too, each holding only its own settings."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        reason = error.strerror or describe(error)
        raise UserError(
            f"Settings file {path} cannot be read ({reason}); check the --settings path."
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserError(
            f"Settings file {path} is not valid YAML ({describe(error)}); write name: value lines."
        ) from None
    if raw is None:
        return SettingsFile(path)
    if not isinstance(raw, dict):
        raise UserError(f"Settings file {path} must hold name: value lines, e.g. seed: 7.")
    folders = {
        str(name): _folder(path, str(name), raw.pop(name))
        for name in list(raw)
        if name in FOLDER_NAMES
    }
    values: dict[str, Any] = {}
    written_as: dict[str, str] = {}  # setting → how the file wrote it, to refuse one set twice
    for key, value in raw.items():
        section = key if key in SECTIONS else None
        entries = _section_entries(path, key, value) if section else {key: value}
        for name, item in entries.items():
            setting = _known_setting(path, section, str(name))
            where = f"{section}: {name}" if section else str(name)
            if setting in written_as:
                raise UserError(
                    f"Settings file {path} sets {setting} twice ('{written_as[setting]}' and "
                    f"'{where}'); keep one."
                )
            written_as[setting] = where
            values[setting] = _checked_value(path, setting, item)
    return SettingsFile(path, folders, values)


def _folder(path: Path, name: str, value: Any) -> str:
    """A folder a settings file names; a relative one is relative to the file's own folder, so
    the file means the same folders wherever a command or the UI is started."""
    if not isinstance(value, str) or not value.strip():
        raise UserError(
            f"Settings file {path}: {name} must be a folder path such as {name.removesuffix('_dir')}, "
            f"not {value!r}."
        )
    return str(path.parent / Path(value).expanduser())


def _checked_value(path: Path, setting: str, value: Any) -> Any:
    """``value`` checked against the setting's type and limits alone, so that the error names the
    file; rules between settings (the split ratios add up to 1) are checked once all are merged."""
    field = setting_fields()[setting][1]
    try:
        return TypeAdapter(Annotated[field.annotation, field]).validate_python(value)
    except ValidationError as error:
        problem = error.errors()[0]["type"]
        shown = repr(value) if isinstance(value, str) else str(value)
        raise UserError(
            f"Settings file {path}: {value_sentence(setting, field, problem, shown)}"
        ) from None


def _section_entries(path: Path, section: str, value: Any) -> dict[Any, Any]:
    """The ``name: value`` lines of a section (none for an empty ``data:`` line)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        example = next(iter(_section_settings(section)))
        raise UserError(
            f"Settings file {path} sets section '{section}' to {value!r}, but a section holds "
            f"name: value lines indented under it (e.g. '{section}:' then '  {example}: ...')."
        )
    return value


def _known_setting(path: Path, section: str | None, name: str) -> str:
    """The setting ``name`` (or its alias) stands for, written in ``section`` (None: top level);
    a name that is no setting, or a setting of another section, is a UserError."""
    fields = setting_fields()
    setting = ALIASES.get(name, name)
    if section is None:
        if setting not in fields:
            hint = did_you_mean(name, list(fields))
            raise UserError(f"Settings file {path} has an unknown setting '{name}'.{hint}")
        return setting
    own = _section_settings(section)
    if setting not in fields:
        hint = did_you_mean(name, own) or f" The settings of '{section}' are {', '.join(own)}."
        raise UserError(
            f"Settings file {path} has an unknown setting '{name}' in section '{section}'.{hint}"
        )
    home = fields[setting][0]
    if home != section:
        place = "at the top level" if home is None else f"in section '{home}'"
        raise UserError(
            f"Settings file {path} has '{name}' in section '{section}', but it belongs {place}; "
            "move it there."
        )
    return setting


def _section_settings(section: str) -> list[str]:
    return [name for name, (home, _) in setting_fields().items() if home == section]


def resolve_settings(
    *,
    base: Mapping[str, Any] | None = None,
    files: Sequence[SettingsFile] = (),
    flags: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Defaults < ``base`` (a command's own defaults, e.g. the demo's) < each file in turn < the
    flags."""
    values: dict[str, Any] = dict(base or {})
    for settings_file in files:
        values.update(settings_file.settings)
    values.update(parse_setting_flags(flags or {}))
    return PipelineConfig.from_flat(values)

"""Where settings come from: the defaults, a settings file, flags typed by a user, in that order.

Every source ends in ``PipelineConfig.from_flat``, so the model in ``core/settings.py`` is the
only validation; this module only turns text into values of the field's type.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings import SECTIONS, PipelineConfig, setting_fields
from imgcls_pipeline.core.settings_errors import did_you_mean, value_sentence, without_none

# Spellings the original specification's train.py used on its command line.
ALIASES = {"accum_steps": "gradient_accumulation_steps"}
_NONE_WORDS = ("none", "null", "")


def flag_names() -> list[str]:
    return sorted([*setting_fields(), *ALIASES])


def parse_flags(flags: Mapping[str, str]) -> dict[str, Any]:
    """``{"seed": "7", "class_names": "a,b"}`` (text, as typed) → values by setting name."""
    fields = setting_fields()
    values: dict[str, Any] = {}
    for flag, text in flags.items():
        name = ALIASES.get(flag, flag)
        if name not in fields:
            raise UserError(
                f"Unknown flag --{flag}.{did_you_mean(name, flag_names(), '--')} Valid settings: "
                f"{', '.join('--' + n for n in flag_names())}."
            )
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


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """A YAML file of ``name: value`` lines, as the flags (``seed: 7``, ``class_names: [a, b]``);
    the sections of ``PipelineConfig.to_dict()`` (``training: {total_epochs: 4}``) are read too."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(
            f"Settings file {path} cannot be read ({error.strerror}); check the --settings path."
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        first_line = str(error).splitlines()[0]
        raise UserError(
            f"Settings file {path} is not valid YAML ({first_line}); write name: value lines."
        ) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"Settings file {path} must hold name: value lines, e.g. seed: 7.")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS and isinstance(value, dict):
            values.update(value)
        else:
            values[key] = value
    values = {ALIASES.get(name, name): value for name, value in values.items()}
    known = setting_fields()
    for name in values:
        if name not in known:
            hint = did_you_mean(str(name), list(known))
            raise UserError(f"Settings file {path} has an unknown setting '{name}'.{hint}")
    return values


def resolve_settings(
    *,
    base: Mapping[str, Any] | None = None,
    settings_file: str | Path | None = None,
    flags: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Defaults < ``base`` (a command's own defaults, e.g. the demo's) < the file < the flags."""
    values: dict[str, Any] = dict(base or {})
    if settings_file is not None:
        values.update(read_settings_file(settings_file))
    values.update(parse_flags(flags or {}))
    return PipelineConfig.from_flat(values)

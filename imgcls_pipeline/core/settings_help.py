"""Help text for settings, read from the settings' own fields: name, type, default, description.

The descriptions written on the fields of ``core/settings.py`` are the only documentation of a
setting; ``imgcls COMMAND --help`` shows them through this module, so help cannot drift from it.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic.fields import FieldInfo

from imgcls_pipeline.core.settings import SECTIONS, setting_fields
from imgcls_pipeline.core.settings_errors import without_none

# The groups of the original specification's Configuration section, in its order; the top-level
# settings (seed) come first.
GROUP_TITLES: dict[str | None, str] = {
    None: "General",
    "data": "Data",
    "model": "Model",
    "training": "Training",
    "augmentation": "Augmentation",
    "evaluation": "Evaluation",
    "lifecycle": "Lifecycle",
}
_TYPE_WORDS = {int: "int", float: "float", bool: "true|false", str: "text"}


@dataclass(frozen=True)
class SettingHelp:
    name: str
    group: str
    type: str
    default: str
    description: str


def setting_help(name: str) -> SettingHelp:
    section, field = setting_fields()[name]
    return SettingHelp(
        name=name,
        group=GROUP_TITLES[section],
        type=type_text(field),
        default=default_text(field),
        description=field.description or "",
    )


def grouped(names: Iterable[str]) -> dict[str, list[SettingHelp]]:
    """``names``' help by group title, groups in the specification's order, each in the order
    its settings are declared."""
    fields = setting_fields()
    order = [None, *SECTIONS]
    declared = list(fields)
    chosen = sorted(set(names), key=lambda n: (order.index(fields[n][0]), declared.index(n)))
    groups: dict[str, list[SettingHelp]] = {}
    for name in chosen:
        item = setting_help(name)
        groups.setdefault(item.group, []).append(item)
    return groups


def type_text(field: FieldInfo) -> str:
    """How a value is typed on the command line: ``int``, ``float``, ``a,b``, ``flat|ivf|hnsw``,
    with ``|none`` for a setting that can be unset."""
    inner, optional = without_none(field.annotation)
    if typing.get_origin(inner) is list:
        (item,) = typing.get_args(inner)
        base = typing.get_args(item)[0] if hasattr(item, "__metadata__") else item
        word = _TYPE_WORDS.get(base, "text")
        text = f"{word},{word},…"
    elif typing.get_origin(inner) is Literal:
        text = "|".join(map(str, typing.get_args(inner)))
    else:
        text = _TYPE_WORDS.get(inner, "text")
    return text + ("|none" if optional else "")


def default_text(field: FieldInfo) -> str:
    value: Any = field.get_default(call_default_factory=True)
    return value_text(value)


def value_text(value: Any) -> str:
    """A value as it would be typed on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value_text(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)

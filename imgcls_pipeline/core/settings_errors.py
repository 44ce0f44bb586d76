"""One sentence for a rejected setting: which setting, what a valid value looks like, what was given.

The wording comes from each field's type and declared constraints, so a new setting gets a
correct message without a line of its own.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

# Errors where the value is not even of the setting's type; the rest are out of range.
_TYPE_ERRORS = {
    "int_parsing",
    "int_type",
    "int_from_float",
    "float_parsing",
    "float_type",
    "bool_parsing",
    "bool_type",
    "string_type",
    "list_type",
}


def error_sentence(model: type[BaseModel], error: ValidationError, data: Any) -> str:
    """The first problem pydantic found in ``data`` for ``model``, as one sentence."""
    detail = error.errors()[0]
    names = [part for part in detail["loc"] if isinstance(part, str)]
    fields = model.model_fields
    if not names:
        return f"Settings must be name: value pairs, not {detail['input']!r}."
    name = names[0]
    if detail["type"] == "extra_forbidden":
        return (
            f"Unknown setting '{name}' for {model.__name__}.{did_you_mean(name, list(fields))} "
            f"Valid settings: {', '.join(fields)}."
        )
    value = data.get(name, detail["input"]) if isinstance(data, dict) else detail["input"]
    return value_sentence(name, fields[name], detail["type"], _shown(value))


def did_you_mean(name: str, valid: list[str], prefix: str = "") -> str:
    """ " Did you mean --seed?" for a misspelt name, or nothing when no valid name is close."""
    close = difflib.get_close_matches(name, valid, n=3)
    return f" Did you mean {' or '.join(prefix + c for c in close)}?" if close else ""


def value_sentence(subject: str, field: FieldInfo, error_type: str, shown: str) -> str:
    """``subject`` is the setting's name, or the flag (``--name``) the value came from."""
    if error_type in _TYPE_ERRORS:
        return f"{subject} takes {kind(field.annotation)}, not {shown}."
    return f"{subject} must be {requirement(field)}, not {shown}."


def kind(annotation: Any) -> str:
    """What type of value a setting takes, in words ("a whole number", "true or false", ...)."""
    inner, optional = without_none(annotation)
    if typing.get_origin(inner) is list:
        (item,) = typing.get_args(inner)
        words = f"a list of {_plural(item)} separated by commas"
    elif typing.get_origin(inner) is Literal:
        words = "one of " + ", ".join(map(str, typing.get_args(inner)))
    else:
        words = {int: "a whole number", float: "a number", bool: "true or false"}.get(inner, "text")
    return words + (" or none" if optional else "")


def requirement(field: FieldInfo) -> str:
    """Every rule a value must meet, e.g. "between 0 and 0.5" or "one or more of val, test"."""
    inner, optional = without_none(field.annotation)
    if typing.get_origin(inner) is list:
        (item,) = typing.get_args(inner)
        choices = (field.json_schema_extra or {}).get("choices")  # type: ignore[union-attr]
        words = (
            "one or more of " + ", ".join(choices) if choices else f"one or more {_plural(item)}"
        )
    elif typing.get_origin(inner) is Literal:
        words = "one of " + ", ".join(map(str, typing.get_args(inner)))
    else:
        words = _bounds(field.metadata) or kind(inner)
    if optional:
        words += ", or none"
    if field.examples:
        words += f" (e.g. {field.examples[0]})"
    return words


def _plural(item: Any) -> str:
    base = typing.get_args(item)[0] if hasattr(item, "__metadata__") else item
    noun = {int: "whole numbers", float: "numbers"}.get(base, "names")
    bounds = _bounds(getattr(item, "__metadata__", ()))
    return f"{noun} {bounds}" if bounds else noun


def _bounds(metadata: Any) -> str:
    """The numeric limits declared on a field (``Field(gt=0, le=1)``) in words."""
    limits: dict[str, float] = {}
    for item in metadata:
        # A list's items carry theirs in a FieldInfo: list[Annotated[int, Field(gt=0)]].
        for constraint in item.metadata if isinstance(item, FieldInfo) else [item]:
            for key in ("gt", "ge", "lt", "le"):
                if isinstance(constraint, annotated_types.BaseMetadata) and hasattr(
                    constraint, key
                ):
                    limits[key] = getattr(constraint, key)
    if "gt" in limits and "lt" in limits:
        return f"between {limits['gt']:g} and {limits['lt']:g}, exclusive"
    if "ge" in limits and "le" in limits:
        return f"between {limits['ge']:g} and {limits['le']:g}"
    words = {
        "gt": f"above {limits.get('gt', 0):g}",
        "ge": "0 or more" if limits.get("ge") == 0 else f"at least {limits.get('ge', 0):g}",
        "lt": f"below {limits.get('lt', 0):g}",
        "le": f"at most {limits.get('le', 0):g}",
    }
    return " and ".join(words[key] for key in ("gt", "ge", "lt", "le") if key in limits)


def without_none(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)

"""Request bodies checked against the very JSON Schema the OpenAPI document publishes.

One schema, two readers: clients (and schemathesis) read it from ``/api/openapi.json``,
the handler checks a body with :func:`check`, so the API refuses exactly what the document
forbids and accepts what it allows (up to the few rules a schema cannot state, which the
engine's own validation then names). Only the keywords the engine's schemas use are
supported; any other keyword is a programming error (``KeyError`` at import of the schema
in the test that walks them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from .errors import ApiError

SUPPORTED = frozenset(
    {
        "type", "enum", "const", "minimum", "maximum", "minLength", "maxLength", "pattern",
        "properties", "required", "additionalProperties", "oneOf", "description", "example",
        "default", "title", "x-error",
    }
)  # fmt: skip


@lru_cache(maxsize=64)
def _regex(pattern: str) -> re.Pattern[str]:
    # ECMA-262's `$` (no multiline) matches only at the very end; Python's also matches
    # before a final newline. The schemas anchor with a trailing `$` only.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if kind == "object":
        return isinstance(value, Mapping)
    if kind == "array":
        return isinstance(value, list)
    raise KeyError(f"unsupported type {kind!r}")


def _label(path: str) -> str:
    return path or "body"


def check(schema: Mapping[str, Any], value: Any, path: str = "") -> Any:
    """``value`` if it satisfies ``schema``, with integral floats of ``integer`` fields made
    ints (JSON Schema counts ``5.0`` as an integer; the engine wants ``5``); else
    :class:`ApiError` 400 whose ``field`` is the dotted path (``job.attempts``)."""
    unknown = set(schema) - SUPPORTED
    if unknown:
        raise KeyError(f"unsupported schema keyword(s) {sorted(unknown)}")
    field = _label(path)
    kinds = schema.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is_type(value, k) for k in names):
            raise ApiError(400, f"{field} must be {' or '.join(names)}", field=field)
        if "integer" in names and "number" not in names and _is_type(value, "integer"):
            value = int(value)
    if "const" in schema and value != schema["const"]:
        raise ApiError(400, f"{field} must be {schema['const']!r}", field=field)
    if "enum" in schema and value not in schema["enum"]:
        if "x-error" in schema:  # a long enum: a sentence, not the list
            raise ApiError(400, schema["x-error"].format(value=value), field=field)
        raise ApiError(400, f"{field} must be one of {', '.join(map(str, schema['enum']))}",
                       field=field)  # fmt: skip
    if isinstance(value, int | float) and not isinstance(value, bool):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ApiError(400, f"{field} must be between {lo} and {hi}", field=field)
    if isinstance(value, str):
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if len(value) < lo or (hi is not None and len(value) > hi):
            raise ApiError(400, f"{field} must be {lo} to {hi} characters", field=field)
        pattern = schema.get("pattern")
        if pattern is not None and not _regex(pattern).search(value):
            raise ApiError(400, f"{field} has an invalid format", field=field)
    if isinstance(value, Mapping):
        value = _check_object(schema, value, path)
    alternatives = schema.get("oneOf")
    if alternatives is not None and isinstance(value, Mapping):
        value = _check_one_of(alternatives, value, path)
    return value


def _check_object(schema: Mapping[str, Any], value: Mapping[str, Any], path: str) -> Any:
    props: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            where = f"{path}.{name}" if path else name
            raise ApiError(400, f"{where} is required", field=where)
    extra = schema.get("additionalProperties", True)
    out: dict[str, Any] = {}
    for name, item in value.items():
        where = f"{path}.{name}" if path else name
        if name in props:
            out[name] = check(props[name], item, where)
        elif extra is False:
            raise ApiError(400, f"unknown field {where!r}", field=where)
        elif isinstance(extra, Mapping):
            out[name] = check(extra, item, where)
        else:
            out[name] = item
    return out


def _check_one_of(alternatives: list[Mapping[str, Any]], value: Any, path: str) -> Any:
    """The schemas use ``oneOf`` for one thing: exactly one of some fields
    (``[{"required": ["cron"]}, {"required": ["every_ms"]}]``)."""
    names = [n for a in alternatives for n in a["required"]]
    if sum(1 for n in names if n in value) == 1:
        return value
    where = f"{path}.{names[0]}" if path else names[0]
    raise ApiError(400, f"give exactly one of {', '.join(names)}", field=where)

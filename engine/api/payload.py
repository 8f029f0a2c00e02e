"""JSON in and out: the seed's timestamp, responses, and validated request input."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from .errors import ApiError

MAX_INT_DIGITS = 15


def timestamp() -> str:
    """Now as the seed writes it: ISO 8601 in UTC with milliseconds and ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_ms(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def reply(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body) + b"\n", status=status, content_type="application/json"
    )


def ok(**fields: Any) -> web.Response:
    """``{"success": true, ..., "timestamp": ...}``."""
    return reply({"success": True, **fields, "timestamp": timestamp()})


# Event fields that are numbers (Redis stream values are all strings): ms times, counts,
# attempts, the lease epoch.
NUMERIC_EVENT_FIELDS = frozenset(
    {"ts", "duration", "count", "delay", "tick", "next", "due", "epoch", "attemptsMade"}
)


def typed_event(fields: Mapping[str, Any]) -> dict[str, Any]:
    """An events-stream entry with its numeric fields as integers, as everywhere else."""
    out: dict[str, Any] = dict(fields)
    for name in NUMERIC_EVENT_FIELDS.intersection(out):
        value = out[name]
        if value == "":  # none (an ended schedule's `next`): left out, never a string
            del out[name]
        elif isinstance(value, str) and value.lstrip("-").isdigit():
            out[name] = int(value)
    return out


def duplicate_query_param(request: web.Request) -> str | None:
    """The first query parameter given more than once (``?state=a&state=b``), if any:
    which copy wins differs between proxies and frameworks, so none is chosen."""
    seen: set[str] = set()
    for name, _ in request.query.items():  # every pair (iterating gives each name once)
        if name in seen:
            return name
        seen.add(name)
    return None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ApiError(400, f"duplicate field {key!r}", field=key)
        seen[key] = value
    return seen


def loads_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from ``raw``; 400 for invalid JSON, another type, or a key given twice
    at any depth (parsers disagree on which copy wins)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "body is not valid JSON", field="body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object", field="body")
    # orjson keeps the last copy silently; the stdlib parser reports every pair.
    try:
        json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise ApiError(400, "body is nested too deeply", field="body") from None
    return body


def query_int(request: web.Request, name: str, default: int, hi: int) -> int:
    """A non-negative decimal integer query parameter, or 400 naming it."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > MAX_INT_DIGITS:
        raise ApiError(400, f"{name} must be a non-negative integer", field=name)
    value = int(raw)
    if value > hi:
        raise ApiError(400, f"{name} must be at most {hi}", field=name)
    return value


async def json_body(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The request's JSON object body (empty body = ``{}``); 400 naming the field on
    anything else. Reading enforces the app's ``client_max_size`` (413)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    if request.content_type != "application/json":
        raise ApiError(400, "body must be JSON (Content-Type: application/json)", field="body")
    body = loads_object(raw)
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}", field=unknown[0])
    return body


def body_int(body: Mapping[str, Any], name: str, default: int, hi: int) -> int:
    value = body.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
        raise ApiError(400, f"{name} must be an integer between 0 and {hi}", field=name)
    return value

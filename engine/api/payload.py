"""JSON in and out: the seed's timestamp, responses, and validated request input."""

from __future__ import annotations

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
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "body is not valid JSON", field="body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object", field="body")
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

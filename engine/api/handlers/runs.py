"""Declared schedulers: run one now (``POST /api/queues/<scheduler>/run``, with an optional
``Idempotency-Key`` header: a retry with the same key returns the first job)."""

from __future__ import annotations

from aiohttp import web

from ...keys import validate_queue_name
from ..errors import ApiError
from ..messages import run_body
from ..payload import json_body, ok
from ..state import RUN_TARGETS
from .common import actor_of, idempotency_key_of


async def run_now(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        validate_queue_name(name)
    except ValueError:
        raise ApiError(400, "invalid scheduler name", field="name") from None
    target = request.app[RUN_TARGETS].get(name)
    if target is None:
        raise ApiError(404, f"scheduler {name!r} not found")
    # No body fields are accepted: a manual run is the scheduler's own job, never
    # caller-chosen options (mass assignment).
    await json_body(request, frozenset())
    key = idempotency_key_of(request)
    job = await target.run(actor_of(request), idempotency_key=key)
    return ok(**run_body(target.label, job.id, target.queue))

"""Schedules at run time: ``PUT /api/schedules/{name}`` (create or change; the body is
:mod:`..schedule_body`), ``DELETE``, ``POST .../pause``, ``.../resume``, ``.../run`` (admin;
every change audited with the token's ``sub``), and ``GET /api/schedules`` (every schedule,
declared and the operators').

A schedule declared in the config (engine.toml) may be paused, resumed and run here, but
not redefined or removed (409): its config is its source, so a restart never silently
undoes an operator's change and an operator's change never fights a deploy. Pause is a
flag that registrations keep, so it survives restarts and redeploys.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ... import schedulers
from ...cron import Schedule, preview
from ...errors import ScheduleNotFound
from ...keys import validate_queue_name
from ...queue import Queue
from ...scheduler import get_schedule_state, run_schedule_now
from ...scheduler.admin import ScheduleIsDeclared
from ...scheduler.state import ScheduleState
from ..errors import ApiError
from ..payload import json_body, ok
from ..schedule_body import FIELDS, definition_of
from ..state import MANAGER, SCHEDULES
from .common import actor_of, idempotency_key_of

NEXT_FIRES = 3


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    try:
        validate_queue_name(name)
    except ValueError:
        raise ApiError(400, "invalid schedule name", field="name") from None
    return name


def _queue(request: web.Request, queue: str) -> Queue:
    try:
        validate_queue_name(queue)
        return request.app[MANAGER].get_queue(queue)
    except ValueError:
        raise ApiError(400, "invalid queue name", field="queue") from None
    except LookupError:
        raise ApiError(404, f"queue {queue!r} not found", field="queue") from None


async def _locate(request: web.Request, name: str) -> Queue:
    """The queue holding schedule ``name``: ``?queue=`` or the one registered queue that has
    it (409 when several do)."""
    if "queue" in request.query:
        return _queue(request, request.query["queue"])
    manager = request.app[MANAGER]
    queues = list(manager.queues.values())
    async with manager.client.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.exists(q.keys.schedule(name))
        found = [q for q, hit in zip(queues, await pipe.execute(), strict=True) if hit]
    if not found:
        raise ApiError(404, f"schedule {name!r} not found")
    if len(found) > 1:
        raise ApiError(409, f"schedule {name!r} exists in several queues: give ?queue=")
    return found[0]


def next_fires(schedule: Schedule, first: int | None, count: int = NEXT_FIRES) -> list[int]:
    """``first`` (the stored next fire) and the ``count - 1`` after it."""
    if first is None:
        return []
    return [first, *preview(schedule, first, count - 1)]


async def put_schedule(request: web.Request) -> web.Response:
    name = _name(request)
    body = await json_body(request, FIELDS)
    definition = definition_of(name, body)
    queue = _queue(request, definition.queue)
    try:
        result = await schedulers.upsert_definition(
            definition, manager=request.app[MANAGER], actor=actor_of(request)
        )
    except ScheduleIsDeclared as exc:
        raise ApiError(409, str(exc)) from None
    state = await get_schedule_state(queue.store, queue.name, name)
    return ok(
        action=result.action,
        schedule=state.to_dict(),
        nextFires=next_fires(definition.schedule, state.next_fire_ms),
    )


async def list_schedules(request: web.Request) -> web.Response:
    """The declared schedules (the service's reader: also those not registered yet), then
    every other schedule of the served queues."""
    reader = request.app[SCHEDULES]
    out: list[dict[str, Any]] = await reader() if reader is not None else []
    listed = {(s["queue"], s["name"]) for s in out}
    for state in await schedulers.list_all(request.app[MANAGER]):
        if (state.queue, state.name) not in listed:
            out.append(_listed(state))
    return ok(schedules=out)


def _listed(state: ScheduleState) -> dict[str, Any]:
    return {**state.to_dict(), "registered": True}


async def delete_schedule(request: web.Request) -> web.Response:
    name = _name(request)
    queue = await _locate(request, name)
    try:
        removed = await schedulers.remove_schedule(
            name, queue=queue.name, manager=request.app[MANAGER], actor=actor_of(request)
        )
    except ScheduleIsDeclared as exc:
        raise ApiError(409, str(exc)) from None
    if not removed:
        raise ApiError(404, f"schedule {name!r} not found")
    return ok(message=f"Schedule {name} removed", queue=queue.name, schedule=name)


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    name = _name(request)
    queue = await _locate(request, name)
    await json_body(request, frozenset())
    call = schedulers.pause_schedule if paused else schedulers.resume_schedule
    try:
        changed = await call(
            name, queue=queue.name, manager=request.app[MANAGER], actor=actor_of(request)
        )
    except ScheduleNotFound:
        raise ApiError(404, f"schedule {name!r} not found") from None
    state = await get_schedule_state(queue.store, queue.name, name)
    return ok(changed=changed, schedule=state.to_dict())


async def pause_schedule(request: web.Request) -> web.Response:
    return await _set_paused(request, True)


async def resume_schedule(request: web.Request) -> web.Response:
    return await _set_paused(request, False)


async def run_schedule(request: web.Request) -> web.Response:
    name = _name(request)
    queue = await _locate(request, name)
    await json_body(request, frozenset())
    key = idempotency_key_of(request)
    actor = actor_of(request)
    try:
        job = await run_schedule_now(queue, name, actor, idempotency_key=key)
    except ScheduleNotFound:
        raise ApiError(404, f"schedule {name!r} not found") from None
    return ok(message=f"Schedule {name} run now", queue=queue.name, jobId=job.id)

"""The dashboard's schedules page: list, preview a draft's next fire times, create or
change (``PUT``), run now, pause, resume, delete. The body of a change is the REST
``PUT /api/schedules/{name}`` body, checked by the same schema; every mutation goes
through the dashboard's CSRF check (:func:`.handlers.protected`) and is audited with the
user as ``by``. A schedule declared in engine.toml may be run, paused and resumed here,
never changed or deleted (409, and the page disables those buttons saying why).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ... import schedulers
from ...cron import MAX_PREVIEW, preview
from ...errors import ScheduleNotFound
from ...keys import validate_queue_name
from ...scheduler import ScheduleDefinition, get_schedule_state, run_schedule_now, server_time_ms
from ...scheduler.admin import ScheduleIsDeclared
from ..errors import ApiError
from ..handlers.schedules import next_fires
from ..payload import json_body
from ..schedule_body import FIELDS, ZONES, body_of, definition_of
from .handlers import MANAGER, PRINCIPAL, RUNNERS, _queue, _reply

PREVIEW_FIRES = 5


def _actor(request: web.Request) -> str:
    return request[PRINCIPAL].subject


def _schedule_name(request: web.Request) -> str:
    name = request.match_info["schedule"]
    try:
        return validate_queue_name(name)
    except ValueError:
        raise ApiError(400, "invalid schedule name", field="name") from None


def _definition(raw: str | None) -> ScheduleDefinition | None:
    try:
        return ScheduleDefinition.from_dict(orjson.loads(raw or ""))
    except (ValueError, KeyError, TypeError):
        return None  # unreadable here: the row shows its `setAside` reason


async def schedules(request: web.Request) -> web.Response:
    """Every schedule of the served queues with its next fires and, when readable here,
    its definition as a PUT body (what the edit form starts from)."""
    manager = request.app[MANAGER]
    out: list[dict[str, Any]] = []
    for q in manager.queues.values():
        for name in await q.store.client.zrange(q.keys.schedules, 0, -1):
            try:
                state = await get_schedule_state(manager.store, q.name, name)
            except ScheduleNotFound:
                continue  # removed meanwhile
            definition = _definition(await q.store.client.hget(q.keys.schedule(name), "def"))
            upcoming: list[int] = []
            if definition is not None and state.set_aside is None:
                upcoming = next_fires(definition.schedule, state.next_fire_ms)
            body = None if definition is None else body_of(definition)
            out.append({**state.to_dict(), "nextFires": upcoming, "definition": body})
    return _reply({"schedules": out})


async def zones(request: web.Request) -> web.Response:
    return _reply({"zones": ZONES})


async def preview_schedule(request: web.Request) -> web.Response:
    """The next fire times of a draft (the PUT body), from Redis's clock; 400 naming the
    field the draft gets wrong. Nothing is written."""
    body = await json_body(request, FIELDS)
    definition = definition_of("preview", body)
    now = await server_time_ms(request.app[MANAGER].store)
    fires = preview(definition.schedule, now, min(PREVIEW_FIRES, MAX_PREVIEW))
    if definition.limit is not None:
        fires = fires[: definition.limit]  # at most that many in all; `fired` may be less
    return _reply({"nextFires": fires, "timezone": definition.schedule.tz, "now": now})


async def put_schedule(request: web.Request) -> web.Response:
    name = _schedule_name(request)
    definition = definition_of(name, await json_body(request, FIELDS))
    manager = request.app[MANAGER]
    try:
        queue = manager.get_queue(definition.queue)
    except LookupError:
        raise ApiError(404, f"queue {definition.queue!r} not found", field="queue") from None
    try:
        result = await schedulers.upsert_definition(
            definition, manager=manager, actor=_actor(request)
        )
    except ScheduleIsDeclared as exc:
        raise ApiError(409, str(exc)) from None
    state = await get_schedule_state(queue.store, queue.name, name)
    return _reply({"success": True, "action": result.action, "schedule": state.to_dict(),
                   "nextFires": next_fires(definition.schedule, state.next_fire_ms)})  # fmt: skip


async def schedule_action(request: web.Request) -> web.Response:
    queue, name = _queue(request), _schedule_name(request)
    action = request.match_info["action"]
    if action not in ("run", "pause", "resume"):
        raise ApiError(404, "unknown action")
    await json_body(request, frozenset())
    actor = _actor(request)
    try:
        if action == "run":
            job_id = await _run(request, queue.name, name, actor)
            return _reply({"success": True, "queue": queue.name, "schedule": name,
                           "jobId": job_id})  # fmt: skip
        call = schedulers.pause_schedule if action == "pause" else schedulers.resume_schedule
        changed = await call(name, queue=queue.name, manager=request.app[MANAGER], actor=actor)
    except ScheduleNotFound:
        raise ApiError(404, "schedule not found") from None
    return _reply({"success": True, "queue": queue.name, "schedule": name, "changed": changed})


async def _run(request: web.Request, queue_name: str, name: str, actor: str) -> str:
    target = request.app[RUNNERS].get(name)
    if target is not None and target.queue == queue_name:
        return str((await target.run(actor)).id)  # the service's run: it writes the audit
    queue = request.app[MANAGER].get_queue(queue_name)
    return (await run_schedule_now(queue, name, actor)).id  # it writes the audit event


async def delete_schedule(request: web.Request) -> web.Response:
    queue, name = _queue(request), _schedule_name(request)
    try:
        removed = await schedulers.remove_schedule(
            name, queue=queue.name, manager=request.app[MANAGER], actor=_actor(request)
        )
    except ScheduleIsDeclared as exc:
        raise ApiError(409, str(exc)) from None
    if not removed:
        raise ApiError(404, "schedule not found")
    return _reply({"success": True, "queue": queue.name, "schedule": name, "removed": True})


def routes() -> list[tuple[str, str, Any, str]]:
    """(method, path under the base, handler, route name)."""
    one = "/api/queues/{name}/schedules/{schedule}"
    return [
        ("GET", "/api/schedules", schedules, "dashboard_schedules"),
        ("GET", "/api/zones", zones, "dashboard_zones"),
        ("POST", "/api/schedule-preview", preview_schedule, "dashboard_schedule_preview"),
        ("PUT", "/api/schedules/{schedule}", put_schedule, "dashboard_schedule_put"),
        ("POST", one + "/{action}", schedule_action, "dashboard_schedule_action"),
        ("DELETE", one, delete_schedule, "dashboard_schedule_delete"),
    ]

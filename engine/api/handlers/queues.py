"""Queue endpoints of the seed: stats, job listings, pause/resume, clean; plus events."""

from __future__ import annotations

from aiohttp import web

from ...job import LISTED_STATES, JobState
from ...queue import MAX_PAGE
from ..errors import ApiError
from ..messages import clean_body, jobs_body, page_end, pause_body
from ..payload import body_int, json_body, ok, query_int, typed_event
from ..state import MANAGER
from .common import actor_of, queue_of

MAX_INDEX = 10**9
MAX_GRACE_MS = 10 * 365 * 24 * 3600 * 1000
DEFAULT_GRACE_MS = 3_600_000
DEFAULT_EVENTS = 100
_CLEAN_FIELDS = frozenset({"gracePeriod"})


async def all_stats(request: web.Request) -> web.Response:
    stats = await request.app[MANAGER].get_all_stats()
    return ok(queues={name: s.to_dict() for name, s in stats.items()})


async def queue_stats(request: web.Request) -> web.Response:
    queue = queue_of(request)
    return ok(stats=(await queue.get_stats()).to_dict())


def _state_param(request: web.Request) -> JobState:
    raw = request.query.get("state", JobState.WAITING.value)
    if raw not in LISTED_STATES:
        allowed = ", ".join(s.value for s in LISTED_STATES)
        raise ApiError(400, f"state must be one of {allowed}", field="state")
    return JobState(raw)


async def list_jobs(request: web.Request) -> web.Response:
    queue = queue_of(request)
    state = _state_param(request)
    start = query_int(request, "start", 0, MAX_INDEX)
    asked = query_int(request, "end", start + 9, MAX_INDEX)
    # No refusal that spans two parameters (a schema cannot state it): a range past a page
    # is served up to its first MAX_PAGE jobs, and `end` in the reply says where it
    # stopped; a range that ends before it starts is empty.
    end = page_end(start, asked)
    jobs = await queue.get_jobs(state, start, end) if end >= start else []
    return ok(**jobs_body(queue.name, state.value, start, end, jobs))


async def pause(request: web.Request) -> web.Response:
    queue = queue_of(request)
    await json_body(request, frozenset())
    changed = await queue.pause(actor_of(request))
    return ok(**pause_body(queue.name, True, changed))


async def resume(request: web.Request) -> web.Response:
    queue = queue_of(request)
    await json_body(request, frozenset())
    changed = await queue.resume(actor_of(request))
    return ok(**pause_body(queue.name, False, changed))


async def _clean(request: web.Request, state: JobState) -> web.Response:
    queue = queue_of(request)
    body = await json_body(request, _CLEAN_FIELDS)
    grace_ms = body_int(body, "gracePeriod", DEFAULT_GRACE_MS, MAX_GRACE_MS)
    removed = await queue.clean(state, grace_ms, actor_of(request))
    return ok(**clean_body(queue.name, state.value, grace_ms, removed))


async def clean_completed(request: web.Request) -> web.Response:
    return await _clean(request, JobState.COMPLETED)


async def clean_failed(request: web.Request) -> web.Response:
    return await _clean(request, JobState.FAILED)


async def events(request: web.Request) -> web.Response:
    queue = queue_of(request)
    count = query_int(request, "count", DEFAULT_EVENTS, MAX_PAGE)
    if count < 1:
        raise ApiError(400, "count must be at least 1", field="count")
    return ok(queue=queue.name, events=[typed_event(e) for e in await queue.events(count)])

"""One job: read it, retry it, promote it, remove it, cancel it."""

from __future__ import annotations

from aiohttp import web

from ...errors import InvalidJobState
from ...queue import Queue
from ..errors import ApiError
from ..messages import cancel_body, job_action_body, state_conflict
from ..payload import json_body, ok
from .common import actor_of, job_id_of, queue_of


async def get_job(request: web.Request) -> web.Response:
    queue = queue_of(request)
    job_id = job_id_of(request)
    job = await queue.get_job(job_id)
    if job is None:
        raise ApiError(404, f"job {job_id!r} not found in queue {queue.name!r}")
    return ok(job=job.to_json())


async def act_on_job(queue: Queue, job_id: str, action: str, actor: str) -> None:
    """Retry, promote, remove or cancel; a refusal is an ``ApiError`` 409 naming the state
    the job is in (as the refusing script saw it)."""
    method = {
        "retry": queue.retry_job,
        "promote": queue.promote_job,
        "remove": queue.remove_job,
        "cancel": queue.cancel_job,
    }
    try:
        await method[action](job_id, actor)
    except InvalidJobState as exc:
        raise ApiError(409, state_conflict(job_id, action, exc.state or None)) from None


async def _action(request: web.Request, action: str) -> web.Response:
    queue, job_id = queue_of(request), job_id_of(request)
    if request.method == "POST":
        await json_body(request, frozenset())
    await act_on_job(queue, job_id, action, actor_of(request))
    return ok(**job_action_body(queue.name, job_id, action))


async def retry_job(request: web.Request) -> web.Response:
    return await _action(request, "retry")


async def promote_job(request: web.Request) -> web.Response:
    return await _action(request, "promote")


async def remove_job(request: web.Request) -> web.Response:
    return await _action(request, "remove")


async def cancel_job(request: web.Request) -> web.Response:
    """Fail a job that has not finished, at once (a running one's handler is stopped where
    it runs); 409 naming the state of a finished job."""
    queue, job_id = queue_of(request), job_id_of(request)
    await json_body(request, frozenset())
    try:
        was = await queue.cancel_job(job_id, actor_of(request))
    except InvalidJobState as exc:
        raise ApiError(409, state_conflict(job_id, "cancel", exc.state or None)) from None
    return ok(**cancel_body(queue.name, job_id, was.value))

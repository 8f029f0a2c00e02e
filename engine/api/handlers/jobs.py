"""One job: read it, retry it, promote it, remove it."""

from __future__ import annotations

from aiohttp import web

from ..errors import ApiError
from ..payload import json_body, ok
from .common import actor_of, job_id_of, queue_of


async def get_job(request: web.Request) -> web.Response:
    queue = queue_of(request)
    job_id = job_id_of(request)
    job = await queue.get_job(job_id)
    if job is None:
        raise ApiError(404, f"job {job_id!r} not found in queue {queue.name!r}")
    return ok(job=job.to_json())


async def retry_job(request: web.Request) -> web.Response:
    queue, job_id = queue_of(request), job_id_of(request)
    await json_body(request, frozenset())
    await queue.retry_job(job_id, actor_of(request))
    return ok(message=f"Job {job_id} reintentado", queue=queue.name, jobId=job_id)


async def promote_job(request: web.Request) -> web.Response:
    queue, job_id = queue_of(request), job_id_of(request)
    await json_body(request, frozenset())
    await queue.promote_job(job_id, actor_of(request))
    return ok(message=f"Job {job_id} promovido", queue=queue.name, jobId=job_id)


async def remove_job(request: web.Request) -> web.Response:
    queue, job_id = queue_of(request), job_id_of(request)
    await queue.remove_job(job_id, actor_of(request))
    return ok(message=f"Job {job_id} eliminado", queue=queue.name, jobId=job_id)

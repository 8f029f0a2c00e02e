"""The consistency check of one queue (admin: it reads every job of the queue)."""

from __future__ import annotations

from aiohttp import web

from ...consistency import MAX_SAMPLE
from ..payload import ok, query_int
from .common import queue_of

DEFAULT_SAMPLE = 20


async def check(request: web.Request) -> web.Response:
    queue = queue_of(request)
    sample = query_int(request, "sample", DEFAULT_SAMPLE, MAX_SAMPLE)
    report = await queue.check_consistency(sample)
    return ok(report=report.to_dict())

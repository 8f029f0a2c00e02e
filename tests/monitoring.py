"""Shared by the metrics, alerts and dashboard tests: run jobs through the real worker
scripts (claim, complete, fail) without a worker loop, so each test decides exactly which
events the streams get."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from engine import Queue, QueueManager
from engine.api import ApiSettings, AuthConfig, create_app
from engine.api.dashboard import setup_dashboard
from engine.metrics import setup_metrics
from tests.lua.worker_calls import calls
from tests.lua.worker_calls import claim as worker_claim


async def claim(q: Queue, count: int = 1, worker: str = "w1") -> list[tuple[str, str]]:
    """Move up to ``count`` waiting jobs to active; returns ``(job id, lease token)`` pairs."""
    return [(str(job[0]), str(job[1])) for job in await worker_claim(q, count, worker)]


async def complete(q: Queue, job_id: str, token: str, rv: str = "1") -> Any:
    return await calls(q).complete([(job_id, token, rv, -1, -1)], 1000)


async def fail(
    q: Queue, job_id: str, token: str, reason: str = "boom", stack: str = "Traceback: boom"
) -> Any:
    """Fail the attempt for good (no retry)."""
    k = q.keys
    return await calls(q).fail(
        [k.job_prefix, job_id, token, reason, stack, 10, -1, -1, -1, q.store.max_events, 1000]
    )


async def run_one(q: Queue, ok: bool = True, reason: str = "boom") -> str:
    """Add a job and run it to completion (or failure) at once; returns its id."""
    job = await q.add({"n": 1})
    ((job_id, token),) = await claim(q)
    assert job_id == job.id
    if ok:
        await complete(q, job_id, token)
    else:
        await fail(q, job_id, token, reason)
    return job_id


async def add_event(q: Queue, entry_id: str = "*", **fields: str | int) -> str:
    """Append a raw event, as the scheduler's scripts do (fired, missed)."""
    return str(await q.store.client.xadd(q.keys.events, fields, id=entry_id))


async def redis_now_ms(q: Queue) -> int:
    sec, usec = await q.store.client.time()
    return int(sec) * 1000 + int(usec) // 1000


PASSWORD = "correct horse battery staple"


@asynccontextmanager
async def serve_dashboard(
    manager: QueueManager, env: dict[str, str] | None = None, request_timeout_s: float = 2.0
) -> AsyncIterator[str]:
    """The real API app with the dashboard and /metrics mounted, on a loopback port;
    yields the base URL."""
    secret = "s" * 40
    auth = AuthConfig.hs256(secret)
    app = create_app(manager, auth, settings=ApiSettings(request_timeout_s=request_timeout_s))
    env = {"ENGINE_ADMIN_PASSWORD": PASSWORD} if env is None else env
    setup_dashboard(app, manager, env=env, auth=auth)
    setup_metrics(app, manager, env={})
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def token(role: str | None, sub: str = "viewer") -> str:
    return AuthConfig.hs256("s" * 40).mint(sub, role)

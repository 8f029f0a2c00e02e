"""Shared by the API tests: serve the app on loopback and call it over real HTTP.

(No tests here; the module name keeps it among the API test files.)
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from engine import QueueManager
from engine.api import ApiSettings, AuthConfig, RunTarget, create_app
from engine.api.server import EdgeRunner, HttpLimits
from engine.api.state import ScheduleReader
from engine.job import Job

SECRET = secrets.token_hex(32)
AUTH = AuthConfig.hs256(SECRET)

SEED_QUEUES = {
    "serpram-sync": {
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 5000},
        "removeOnComplete": 50,
        "removeOnFail": 100,
    },
    "ayt-sync": {
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 3000},
        "removeOnComplete": 100,
        "removeOnFail": 200,
    },
}


def manual_run_targets(manager: QueueManager) -> list[RunTarget]:
    def target(name: str, queue: str, label: str) -> RunTarget:
        async def run(actor: str, idempotency_key: str | None = None) -> Job:
            return await manager.add_job(queue, {"type": "manual", "by": actor}, name=name)

        return RunTarget(name=name, queue=queue, label=label, run=run)

    return [target("serpram", "serpram-sync", "SERPRAM"), target("ayt", "ayt-sync", "AYT")]


def register_seed_queues(manager: QueueManager) -> None:
    for name, opts in SEED_QUEUES.items():
        manager.create_queue(name, opts)


@dataclass
class Api:
    """A running app and a client bound to it."""

    base: str
    session: aiohttp.ClientSession
    manager: QueueManager
    app: web.Application | None = None

    def token(self, role: str | None = "admin", sub: str = "tester", **claims: Any) -> str:
        if not claims:
            return AUTH.mint(sub, role)
        import time

        import jwt

        body: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + 600}
        if role:
            body["role"] = role
        body.update(claims)
        return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, "HS256")

    def headers(self, role: str | None = "admin", **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, **claims)}"}

    async def call(
        self,
        method: str,
        path: str,
        *,
        role: str | None = "admin",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        hdrs = self.headers(role) if headers is None else headers
        async with self.session.request(method, self.base + path, headers=hdrs, **kwargs) as resp:
            raw = await resp.read()
            body = None
            if resp.content_type == "application/json":
                body = await resp.json()
            else:
                body = raw.decode(errors="replace")
            return resp.status, body, resp


@asynccontextmanager
async def serve(
    manager: QueueManager,
    *,
    auth: AuthConfig = AUTH,
    run_targets: Iterable[RunTarget] | None = None,
    schedules: ScheduleReader | None = None,
    settings: ApiSettings | None = None,
    limits: HttpLimits | None = None,
) -> AsyncIterator[Api]:
    app = create_app(
        manager,
        auth,
        run_targets=manual_run_targets(manager) if run_targets is None else run_targets,
        schedules=schedules,
        settings=settings,
    )
    runner = EdgeRunner(app, limits)  # the service's server: its timeouts and error answers
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(f"http://127.0.0.1:{port}", session, manager, app)
    finally:
        await runner.cleanup()

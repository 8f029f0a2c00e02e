"""The application factory.

``create_app`` wires one manager (whose queues the API serves), the JWT configuration,
the declared schedulers and limits. By default the app does not own the manager: the
service closes Redis itself, after the workers have drained. Pass ``owns_manager=True``
when embedding only the API, and the app closes it on cleanup.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping

from aiohttp import web
from redis.exceptions import RedisError

from ..manager import QueueManager
from .auth import AuthConfig
from .errors import error_middleware
from .guard import guard_middleware
from .handlers.health import STARTED_AT, Started
from .openapi import build_openapi, query_params
from .routes import ROUTES
from .state import (
    ACCESS,
    AUTH,
    MANAGER,
    OPENAPI_DOC,
    QUERY_PARAMS,
    RUN_TARGETS,
    SCHEDULES,
    SETTINGS,
    ApiSettings,
    RunTarget,
    ScheduleReader,
)

logger = logging.getLogger("engine.api")


def create_app(
    manager: QueueManager,
    auth: AuthConfig,
    *,
    run_targets: Iterable[RunTarget] = (),
    schedules: ScheduleReader | None = None,
    settings: ApiSettings | None = None,
    owns_manager: bool = False,
) -> web.Application:
    settings = settings or ApiSettings()
    targets: Mapping[str, RunTarget] = {t.name: t for t in run_targets}
    # aiohttp enforces the limit when a handler reads the body; the guard also refuses
    # a declared Content-Length above it before anything else runs.
    app = web.Application(
        middlewares=[error_middleware, guard_middleware], client_max_size=settings.body_limit
    )
    app[MANAGER] = manager
    app[STARTED_AT] = Started()  # health's `starting` window
    app[AUTH] = auth
    app[SETTINGS] = settings
    app[RUN_TARGETS] = targets
    app[SCHEDULES] = schedules
    app[ACCESS] = {r.name: r.access for r in ROUTES}
    app[OPENAPI_DOC] = build_openapi(ROUTES)
    app[QUERY_PARAMS] = query_params(app[OPENAPI_DOC])
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler, name=route.name)

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        await _check_redis(app[MANAGER])
        yield
        if owns_manager:
            await app[MANAGER].close_all()

    app.cleanup_ctx.append(redis_ctx)
    return app


async def _check_redis(manager: QueueManager) -> None:
    """Warn (never fail: Redis may come up later) about an unreachable Redis or an eviction
    policy that could silently drop queue keys."""
    try:
        policy = await manager.client.config_get("maxmemory-policy")
    except RedisError as exc:
        logger.warning(
            "Redis not reachable at startup (%s); the API answers 503 until it is",
            type(exc).__name__,
        )
        return
    value = policy.get("maxmemory-policy")
    if value and value != "noeviction":
        logger.warning(
            "Redis maxmemory-policy is %r: keys of queues may be evicted; set it to noeviction",
            value,
        )

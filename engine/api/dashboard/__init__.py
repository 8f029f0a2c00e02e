"""The web dashboard at ``/admin/queues``: static HTML/CSS/JS (no build step) over a small
JSON API and a server-sent events stream, served by the engine's own aiohttp app."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from aiohttp import web

from ...manager import QueueManager
from ...metrics import feed_of
from ..auth import AuthConfig
from ..guard import STREAM
from ..state import ACCESS, RUN_TARGETS, RunTarget
from .handlers import (
    BASE,
    CONFIG,
    HUB,
    MANAGER,
    RUNNERS,
    THROTTLE,
    DashboardConfig,
    LiveHub,
    hub_context,
    protected,
    routes,
)
from .schedules import routes as schedule_routes
from .throttle import LoginThrottle

logger = logging.getLogger("engine.dashboard")


def setup_dashboard(
    app: web.Application,
    manager: QueueManager,
    *,
    env: Mapping[str, str] | None = None,
    auth: AuthConfig | None = None,
) -> bool:
    """Mount the dashboard on ``app`` if ``ENGINE_ADMIN_PASSWORD`` is set; returns whether
    it did. Without a password it is not mounted and the log says why: there is no default
    password; a weak one is a ``ValueError``. ``auth`` (the API's token verifier) lets
    bearer tokens in as well."""
    env = os.environ if env is None else env
    config = DashboardConfig.from_env(env, auth)  # ValueError for a weak password
    if config is None:
        logger.warning(
            "Dashboard not mounted: set ENGINE_ADMIN_PASSWORD to serve it at %s "
            "(basic auth; there is no default password)",
            BASE,
        )
        return False
    app[CONFIG] = config
    app[THROTTLE] = LoginThrottle()
    app[MANAGER] = manager
    targets: Mapping[str, RunTarget] = app.get(RUN_TARGETS, {})
    app[RUNNERS] = targets
    hub = LiveHub(manager)
    app[HUB] = hub
    feed_of(app, manager).subscribe(hub.observe)
    app.cleanup_ctx.append(hub_context(hub))
    for method, path, handler, name in [*routes(), *schedule_routes()]:
        app.router.add_route(method, BASE + path, protected(handler), name=name)
    if ACCESS in app:
        # The live stream outlives the API's per-request deadline; it authenticates itself.
        access: Mapping[str, str] = app[ACCESS]
        app[ACCESS] = {**access, "dashboard_live": STREAM}
    logger.info("Dashboard at %s (basic auth user %r)", BASE, app[CONFIG].user)
    return True


__all__ = ["DashboardConfig", "setup_dashboard"]

"""``GET /api/queues/health``: counts only, one pipelined round trip, no auth.

``unhealthy`` (503) when Redis does not answer in time; ``degraded`` when a queue has
failures piling up, a large backlog, or schedules and no leader to fire them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from ..payload import reply, timestamp
from ..state import MANAGER, SETTINGS

logger = logging.getLogger("engine.api")

MESSAGES = {
    "healthy": "All queues are working normally",
    "degraded": "Some queues need attention",
    "unhealthy": "Redis unavailable",
}


async def health(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    settings = request.app[SETTINGS]
    policy = settings.health
    queues = list(manager.queues.values())
    try:
        # Half the request deadline, so this handler answers in the health shape
        # before the guard's own deadline fires.
        async with asyncio.timeout(settings.request_timeout_s / 2):
            # The failure window uses this instance's clock: health is advisory, and a
            # TIME in the pipeline would not work on Redis Cluster.
            since_ms = int(time.time() * 1000) - policy.failed_window_ms
            async with manager.client.pipeline(transaction=False) as pipe:
                for q in queues:
                    q._queue_stats(pipe)
                    # paused schedules sit at +inf and need no leader
                    pipe.zcount(q.keys.schedules, "-inf", "(inf")
                    pipe.exists(q.keys.lease)
                    pipe.zcount(q.keys.failed, since_ms, "+inf")
                results = await pipe.execute() if queues else []
            if not queues:
                await manager.client.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        logger.warning("Health check: Redis unavailable (%s)", type(exc).__name__)
        return reply(
            {
                "status": "unhealthy",
                "message": MESSAGES["unhealthy"],
                "details": {},
                "issues": [{"queue": None, "reason": "redis_unavailable"}],
                "timestamp": timestamp(),
            },
            status=503,
        )
    details: dict[str, Any] = {}
    issues: list[dict[str, Any]] = []
    per = 9
    for i, q in enumerate(queues):
        chunk = results[i * per : (i + 1) * per]
        stats = q._stats_from(chunk[:6])
        details[q.name] = stats.to_dict()
        scheduled, has_leader = int(chunk[6]), bool(chunk[7])
        recent_failed = int(chunk[8])
        if recent_failed >= policy.failed_threshold:
            issues.append({"queue": q.name, "reason": "failures", "count": recent_failed})
        if stats.waiting + stats.paused >= policy.waiting_threshold:
            issues.append(
                {"queue": q.name, "reason": "backlog", "count": stats.waiting + stats.paused}
            )
        if scheduled and not has_leader:
            issues.append({"queue": q.name, "reason": "no_leader", "count": scheduled})
    status = "degraded" if issues else "healthy"
    return reply(
        {
            "status": status,
            "message": MESSAGES[status],
            "details": details,
            "issues": issues,
            "timestamp": timestamp(),
        }
    )

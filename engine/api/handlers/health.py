"""``GET /api/queues/health``: counts only, one pipelined round trip, no auth.

``unhealthy`` (503) when Redis does not answer in time; ``degraded`` when a queue has
failures piling up, a large backlog, schedules and no leader to fire them, a schedule this
instance declares missing from Redis (until it is registered again), or schedules set
aside because their definition cannot be read, or a worker of this instance had an internal
task fail (and restarted) within the failure window. ``starting`` (200) instead of ``no_leader``
during the first lease TTL after this instance started its scheduler (or the app, before
any scheduler started): leases are taken a moment after HTTP opens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from redis.exceptions import RedisError

from ...lock import LeaseConfig
from ..payload import reply, timestamp
from ..state import MANAGER, SETTINGS

if TYPE_CHECKING:
    from ...scheduler import Scheduler
    from ...worker import Worker

logger = logging.getLogger("engine.api")


@dataclass(slots=True)
class Started:
    """When the app was created (monotonic): the start of the ``starting`` window."""

    at: float = field(default_factory=time.monotonic)


STARTED_AT = web.AppKey("engine_started_at", Started)

MESSAGES = {
    "healthy": "All queues are working normally",
    "starting": "Starting: the schedulers have not taken their leases yet",
    "degraded": "Some queues need attention",
    "unhealthy": "Redis unavailable",
}
PER_QUEUE = 10  # the six stats commands, then the four below


async def health(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    settings = request.app[SETTINGS]
    policy = settings.health
    queues = list(manager.queues.values())
    schedulers = manager.schedulers
    declared = [(q, name) for q, s in schedulers.items() for name in s.declared.names]
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
                    pipe.scard(q.keys.schedules_aside)
                for queue, name in declared:
                    pipe.exists(manager.store.keys(queue).schedule(name))
                results = await pipe.execute() if queues or declared else []
            if not queues and not declared:
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
    starting: list[dict[str, Any]] = []
    declared_queues = {queue for queue, _ in declared}
    for i, q in enumerate(queues):
        chunk = results[i * PER_QUEUE : (i + 1) * PER_QUEUE]
        stats = q._stats_from(chunk[:6])
        details[q.name] = stats.to_dict()
        scheduled, has_leader = int(chunk[6]), bool(chunk[7])
        recent_failed, aside = int(chunk[8]), int(chunk[9])
        if recent_failed >= policy.failed_threshold:
            issues.append({"queue": q.name, "reason": "failures", "count": recent_failed})
        if stats.waiting + stats.paused >= policy.waiting_threshold:
            issues.append(
                {"queue": q.name, "reason": "backlog", "count": stats.waiting + stats.paused}
            )
        if aside:
            issues.append({"queue": q.name, "reason": "schedules_set_aside", "count": aside})
        if (scheduled or q.name in declared_queues) and not has_leader:
            issue = {"queue": q.name, "reason": "no_leader", "count": scheduled}
            if _starting(request.app, schedulers.get(q.name)):
                starting.append({**issue, "reason": "starting"})
            else:
                issues.append(issue)
    issues += _worker_issues(manager.workers, policy.failed_window_ms / 1000)
    found = results[len(queues) * PER_QUEUE :]
    for (queue, name), exists in zip(declared, found, strict=True):
        if not exists:
            issues.append({"queue": queue, "reason": "schedule_missing", "schedule": name})
    status = "degraded" if issues else "starting" if starting else "healthy"
    return reply(
        {
            "status": status,
            "message": MESSAGES[status],
            "details": details,
            "issues": issues + starting,
            "timestamp": timestamp(),
        }
    )


def _worker_issues(workers: list[Worker], window_s: float) -> list[dict[str, Any]]:
    """A worker task that failed unexpectedly within the window (it was restarted with
    backoff: the worker still runs, but something is wrong)."""
    now = time.time()
    out: list[dict[str, Any]] = []
    for worker in workers:
        for task, info in worker.status()["tasks"].items():
            at = info["last_error_at"]
            if at is not None and now - float(at) < window_s:
                out.append(
                    {
                        "queue": worker.queue_name,
                        "reason": "worker_task_restarted",
                        "task": task,
                        "count": int(info["restarts"]),
                    }
                )
    return out


def _starting(app: web.Application, scheduler: Scheduler | None) -> bool:
    """Within one lease TTL of this instance's scheduler start (or, before it has one, of
    the app's creation)."""
    now = time.monotonic()
    if scheduler is not None and scheduler.started_at:
        return now - scheduler.started_at < scheduler.lease.config.ttl_ms / 1000
    started = app.get(STARTED_AT)
    return started is not None and now - started.at < LeaseConfig().ttl_ms / 1000

"""Prometheus metrics, and the event feed that metrics, alerts and the dashboard share.

Two sources, chosen by what each figure is:

- **State** (jobs per state, paused, leader, Redis up) is read at scrape time in one
  pipelined round trip, O(queues): it is always exact and costs nothing between scrapes.
- **Flow** (completed / failed counters, processing duration, cron lateness, missed ticks)
  comes from the queues' ``events`` streams, which the Lua scripts already write in the
  same atomic step as each transition. :class:`EventFeed` tails them with one blocking
  ``XREAD`` from the last id it saw (so an idle engine costs one command per block
  timeout), and hands each batch to its listeners. No hook in the worker's hot path.

The streams are global, so every instance reports cluster-wide flow figures counted
from its own start: aggregate instances with ``max``, never ``sum`` (the Grafana
dashboard in ``grafana/`` does). A reader that falls more than ``max_events`` behind
loses the trimmed events; with a blocking read this needs a burst larger than the cap
within one round trip.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from .events import Event, EventFeed, Listener
from .manager import QueueManager

logger = logging.getLogger("engine.metrics")

DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
LATENESS_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# A cron job's id is `<schedule>:<tick ms>` (fire_schedule-11+.lua); ticks are 13 digits.
_SCHEDULE_JOB = re.compile(r"^(?P<schedule>.+):(?P<tick>\d{13})$")


def schedule_of(job_id: str) -> str | None:
    """The schedule that fired ``job_id``, or None for any other job."""
    m = _SCHEDULE_JOB.match(job_id)
    return m.group("schedule") if m else None


class EngineMetrics:
    """The engine's Prometheus collectors, in a registry of their own."""

    def __init__(self, manager: QueueManager, registry: CollectorRegistry | None = None) -> None:
        self.manager = manager
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs = Gauge(
            "engine_queue_jobs", "Jobs per queue and state, read at scrape time.",
            ["queue", "state"], registry=r,
        )  # fmt: skip
        self.paused = Gauge(
            "engine_queue_paused", "1 while the queue is paused.", ["queue"], registry=r
        )
        self.completed = Counter(
            "engine_jobs_completed", "Jobs completed (cluster-wide, since this process started).",
            ["queue"], registry=r,
        )  # fmt: skip
        self.failed = Counter(
            "engine_jobs_failed", "Jobs failed for good, after their last attempt.",
            ["queue"], registry=r,
        )  # fmt: skip
        self.events = Counter(
            "engine_events", "Lifecycle events seen in the queues' events streams.",
            ["queue", "event"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "engine_job_duration_seconds", "Processing time of completed jobs (Redis clock).",
            ["queue"], buckets=DURATION_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.lateness = Histogram(
            "engine_cron_lateness_seconds", "Fire time minus scheduled tick time.",
            ["queue", "schedule"], buckets=LATENESS_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.missed = Counter(
            "engine_cron_missed_ticks", "Schedule ticks not fired (misfire or overlap policy).",
            ["queue", "schedule"], registry=r,
        )  # fmt: skip
        self.leader = Gauge(
            "engine_scheduler_leader", "1 for the instance holding the queue's leader lease.",
            ["queue", "instance"], registry=r,
        )  # fmt: skip
        self.leader_epoch = Gauge(
            "engine_scheduler_leader_epoch", "Fencing epoch of the queue's leader lease.",
            ["queue"], registry=r,
        )  # fmt: skip
        self.schedule_registered = Gauge(
            "engine_schedule_registered",
            "1 while a schedule this instance declares is registered in Redis, 0 while missing.",
            ["queue", "schedule"], registry=r,
        )  # fmt: skip
        self.schedules_aside = Gauge(
            "engine_schedules_set_aside", "Schedules set aside: their definition is unreadable.",
            ["queue"], registry=r,
        )  # fmt: skip
        self.schedule_restored = Counter(
            "engine_schedule_restored",
            "Declared schedules registered again after they went missing or stale.",
            ["queue", "schedule"], registry=r,
        )  # fmt: skip
        self.redis_up = Gauge(
            "engine_redis_up", "1 when Redis answered the last scrape.", registry=r
        )
        self.worker_restarts = Gauge(
            "engine_worker_task_restarts",
            "Unexpected failures (each restarted with backoff) of a worker's internal task "
            "(exchange, leases, stalled) in this process since the worker started.",
            ["queue", "worker", "task"], registry=r,
        )  # fmt: skip
        self.worker_running = Gauge(
            "engine_worker_running_jobs", "Handlers running now in this process's workers.",
            ["queue", "worker"], registry=r,
        )  # fmt: skip

    def observe(self, events: Sequence[Event]) -> None:
        """Feed listener: turn one batch of stream events into counter and histogram samples."""
        for ev in events:
            kind = ev.kind
            self.events.labels(ev.queue, kind).inc()
            if kind == "completed":
                self.completed.labels(ev.queue).inc()
                duration_ms = ev.int_field("duration")
                if duration_ms is not None:
                    self.duration.labels(ev.queue).observe(max(duration_ms, 0) / 1000)
            elif kind == "failed":
                self.failed.labels(ev.queue).inc()
            elif kind == "fired":
                tick = ev.int_field("tick")
                if tick is not None:
                    schedule = ev.fields.get("schedule", "")
                    self.lateness.labels(ev.queue, schedule).observe(max(ev.ts_ms - tick, 0) / 1000)
            elif kind == "missed":
                count = ev.int_field("count") or 1
                self.missed.labels(ev.queue, ev.fields.get("schedule", "")).inc(count)
            elif kind == "schedule" and ev.fields.get("action") == "restored":
                self.schedule_restored.labels(ev.queue, ev.fields.get("schedule", "")).inc()

    def _workers(self) -> None:
        """This process's workers, from their own status (no Redis call)."""
        self.worker_restarts.clear()
        self.worker_running.clear()
        for worker in self.manager.workers:
            status = worker.status()
            self.worker_running.labels(worker.queue_name, worker.id).set(status["running"])
            for task, info in status["tasks"].items():
                self.worker_restarts.labels(worker.queue_name, worker.id, task).set(
                    int(info["restarts"])
                )

    async def refresh(self) -> None:
        """Read queue state: stats, pause flag and lease of every queue, one round trip."""
        self._workers()
        queues = list(self.manager.queues.values())
        declared = [
            (queue, name)
            for queue, s in self.manager.schedulers.items()
            for name in s.declared.names
        ]
        try:
            async with self.manager.client.pipeline(transaction=False) as pipe:
                for q in queues:
                    q._queue_stats(pipe)
                    pipe.get(q.keys.lease)
                    pipe.hget(q.keys.meta, "leaderEpoch")
                    pipe.scard(q.keys.schedules_aside)
                for queue, name in declared:
                    pipe.exists(self.manager.store.keys(queue).schedule(name))
                results = await pipe.execute() if queues or declared else []
                if not queues and not declared:
                    await self.manager.client.ping()
        except (RedisError, OSError) as exc:
            logger.warning("Metrics scrape: Redis unavailable (%s)", type(exc).__name__)
            self.redis_up.set(0)
            return
        self.redis_up.set(1)
        self.jobs.clear()
        self.leader.clear()
        per = 9
        for i, q in enumerate(queues):
            chunk = results[i * per : (i + 1) * per]
            stats = q._stats_from(chunk[:6])
            for state in ("waiting", "active", "completed", "failed", "delayed", "paused"):
                self.jobs.labels(q.name, state).set(getattr(stats, state))
            self.paused.labels(q.name).set(1 if chunk[5] else 0)
            token, epoch = chunk[6], chunk[7]
            if token:
                self.leader.labels(q.name, token.rsplit("/", 1)[0]).set(1)
            self.leader_epoch.labels(q.name).set(int(epoch or 0))
            self.schedules_aside.labels(q.name).set(int(chunk[8]))
        found = results[len(queues) * per :]
        for (queue, name), exists in zip(declared, found, strict=True):
            self.schedule_registered.labels(queue, name).set(1 if exists else 0)

    async def render(self) -> bytes:
        """Refresh the state gauges, then the Prometheus text exposition."""
        await self.refresh()
        return generate_latest(self.registry)


FEED = web.AppKey("engine_event_feed", EventFeed)
METRICS = web.AppKey("engine_metrics", EngineMetrics)
METRICS_TOKEN = web.AppKey("engine_metrics_token", str)


def feed_of(app: web.Application, manager: QueueManager) -> EventFeed:
    """The app's shared event feed, created (and started/stopped with the app) once."""
    if FEED not in app:
        feed = EventFeed(manager)
        app[FEED] = feed

        async def feed_ctx(_app: web.Application) -> AsyncIterator[None]:
            await feed.start()
            yield
            await feed.stop()

        app.cleanup_ctx.append(feed_ctx)
    return app[FEED]


async def metrics_handler(request: web.Request) -> web.Response:
    token = request.app[METRICS_TOKEN]
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.Response(
                status=401, text="unauthorized\n", headers={"WWW-Authenticate": "Bearer"}
            )
    body = await request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup_metrics(
    app: web.Application,
    manager: QueueManager,
    *,
    env: Mapping[str, str] | None = None,
    registry: CollectorRegistry | None = None,
) -> EngineMetrics:
    """Serve ``GET /metrics`` on ``app``, fed by the app's event feed.

    ``ENGINE_METRICS_TOKEN``, when set, must be presented as a bearer token (Prometheus
    ``authorization`` config); otherwise the endpoint is open, like most exporters: it
    shows queue names and counts, never job data.
    """
    env = os.environ if env is None else env
    metrics = EngineMetrics(manager, registry)
    feed_of(app, manager).subscribe(metrics.observe)
    app[METRICS] = metrics
    app[METRICS_TOKEN] = env.get("ENGINE_METRICS_TOKEN", "")
    app.router.add_get("/metrics", metrics_handler, name="metrics")
    return metrics


__all__ = [
    "FEED",
    "METRICS",
    "EngineMetrics",
    "Event",
    "EventFeed",
    "Listener",
    "feed_of",
    "schedule_of",
    "setup_metrics",
]

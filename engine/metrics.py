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

import asyncio
import contextlib
import hmac
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from .manager import QueueManager

logger = logging.getLogger("engine.metrics")

DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
LATENESS_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# A cron job's id is `<schedule>:<tick ms>` (fire_schedule-11+.lua); ticks are 13 digits.
_MAX_SEQ = 2**64 - 1  # the largest sequence part of a stream id
_SCHEDULE_JOB = re.compile(r"^(?P<schedule>.+):(?P<tick>\d{13})$")


def schedule_of(job_id: str) -> str | None:
    """The schedule that fired ``job_id``, or None for any other job."""
    m = _SCHEDULE_JOB.match(job_id)
    return m.group("schedule") if m else None


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a queue's events stream; ``ts_ms`` is Redis time (from the id)."""

    queue: str
    id: str
    fields: Mapping[str, str]

    @property
    def kind(self) -> str:
        return self.fields.get("event", "")

    @property
    def ts_ms(self) -> int:
        return int(self.id.split("-", 1)[0])

    def int_field(self, name: str) -> int | None:
        raw = self.fields.get(name)
        try:
            return int(raw) if raw else None
        except ValueError:
            return None


Listener = Callable[[Sequence[Event]], None]


class EventFeed:
    """Tails the events stream of every queue of a manager and fans batches out.

    Listeners are plain functions called on the event loop; they must not block, and an
    exception in one is logged without stopping the feed or the others. Queues created
    after start are picked up on the next read.
    """

    def __init__(
        self,
        manager: QueueManager,
        *,
        block_ms: int = 1000,
        batch: int = 500,
        poll_interval_s: float = 0.5,
        max_backoff_s: float = 5.0,
    ) -> None:
        if block_ms < 1 or batch < 1 or poll_interval_s <= 0 or max_backoff_s <= 0:
            raise ValueError("block_ms, batch, poll_interval_s and max_backoff_s must be positive")
        self.manager = manager
        # A blocked read must return before the socket timeout would call it a failure.
        self.block_ms = max(1, min(block_ms, int(manager.settings.socket_timeout_s * 500)))
        self.batch = batch
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.redis_ok = True
        self._origin: str | None = None  # stream id of the feed's start (Redis time)
        self._last: dict[str, str] = {}  # stream key -> last id seen
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every new batch; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        with contextlib.suppress(RedisError, OSError):
            await self._track_new_queues()  # fixes the origin before the first slow read
        self._task = asyncio.create_task(self._run(), name="engine-event-feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _track_new_queues(self) -> dict[str, str]:
        """Stream key -> queue name for every queue of the manager.

        The feed delivers what happened after it first reached Redis (its origin, in Redis
        time), for every queue, including queues created later: a queue registered a moment
        after its first jobs ran still has those jobs counted, and history before the origin
        is never replayed. Queues known at the origin start exactly at their newest id.
        """
        streams = {q.keys.events: name for name, q in self.manager.queues.items()}
        if self._origin is None:
            sec, usec = await self.manager.client.time()
            now_ms = int(sec) * 1000 + int(usec) // 1000
            # Everything from the start millisecond on: the last id of the one before.
            self._origin = f"{now_ms - 1}-{_MAX_SEQ}"
            keys = list(streams)
            async with self.manager.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.xrevrange(key, count=1)
                tails = await pipe.execute() if keys else []
            for key, tail in zip(keys, tails, strict=True):
                self._last[key] = tail[0][0] if tail else self._origin
        for key in streams:
            self._last.setdefault(key, self._origin)
        return streams

    async def read_once(self, block: bool = True) -> int:
        """One read of every stream; returns how many events were delivered."""
        streams = await self._track_new_queues()
        if not streams:
            if block:
                await asyncio.sleep(self.poll_interval_s)
            return 0
        client = self.manager.client
        positions = {key: self._last[key] for key in streams}
        if isinstance(client, RedisCluster):
            # Streams of different queues live in different slots: one XREAD each,
            # pipelined (the cluster client groups them per node), never blocking.
            async with client.pipeline(transaction=False) as pipe:
                for key, last in positions.items():
                    pipe.xread({key: last}, count=self.batch)
                replies = [r for reply in await pipe.execute() for r in (reply or [])]
            if block and not replies:
                await asyncio.sleep(self.poll_interval_s)
        else:
            replies = await client.xread(
                positions, count=self.batch, block=self.block_ms if block else None
            )
            replies = replies or []
        events: list[Event] = []
        for key, entries in replies:
            queue = streams[key]
            for entry_id, fields in entries:
                events.append(Event(queue, entry_id, fields))
            if entries:
                self._last[key] = entries[-1][0]
        if events:
            self._deliver(events)
        return len(events)

    def _deliver(self, events: Sequence[Event]) -> None:
        for listener in list(self._listeners):
            try:
                listener(events)
            except Exception:
                logger.exception("Event listener %r failed", listener)

    async def _run(self) -> None:
        backoff_s = 0.1
        while True:
            try:
                await self.read_once()
            except (RedisError, OSError) as exc:
                if self.redis_ok:
                    logger.warning("Event feed: Redis unavailable (%s)", type(exc).__name__)
                self.redis_ok = False
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.max_backoff_s)
                continue
            if not self.redis_ok:
                logger.info("Event feed: Redis reachable again")
            self.redis_ok = True
            backoff_s = 0.1


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
        self.redis_up = Gauge(
            "engine_redis_up", "1 when Redis answered the last scrape.", registry=r
        )

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

    async def refresh(self) -> None:
        """Read queue state: stats, pause flag and lease of every queue, one round trip."""
        queues = list(self.manager.queues.values())
        try:
            async with self.manager.client.pipeline(transaction=False) as pipe:
                for q in queues:
                    q._queue_stats(pipe)
                    pipe.get(q.keys.lease)
                    pipe.hget(q.keys.meta, "leaderEpoch")
                results = await pipe.execute() if queues else []
                if not queues:
                    await self.manager.client.ping()
        except (RedisError, OSError) as exc:
            logger.warning("Metrics scrape: Redis unavailable (%s)", type(exc).__name__)
            self.redis_up.set(0)
            return
        self.redis_up.set(1)
        self.jobs.clear()
        self.leader.clear()
        per = 8
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

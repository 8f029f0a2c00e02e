"""Alerts: rules over the events feed and a periodic check, delivered once per incident.

Rules (each can be switched off with 0 / false in ``[alerts]`` of ``engine.toml``):

- ``consecutive_failures``: N jobs of a queue, or N runs of a schedule, failed for good in
  a row (a completed job ends the incident);
- ``stalled_after_s``: a queue has had jobs waiting, and completed nothing, for that long
  (a paused queue is not stalled);
- ``missed_ticks``: a schedule tick was not fired (misfire or overlap policy); the next
  fired tick ends the incident;
- ``redis_down_after_s``: this instance could not reach Redis for that long;
- ``schedule_missing``: a schedule this instance declares is not registered in Redis (data
  lost: a restart without persistence, FLUSHALL, a failover to an empty replica); closed
  once it is registered again.

An incident opens once and closes once. Every instance evaluates the same rules over the
same streams, so each transition is claimed in Redis (``SET NX`` on the incident's
identity, e.g. the stream id of the event that triggered it): exactly one instance delivers
each notice, and one that sees an incident late cannot re-open it after it closed. The hash
``<prefix>:alerts`` lists the open incidents, so every instance can close them. The Redis
rule is the exception, it is about this instance's own connection and cannot use Redis.

Delivery goes to the log and to every webhook (JSON POST), in order, retried with
exponential backoff, through a bounded queue: a flood of incidents drops the oldest
undelivered notices (and says so) rather than growing without bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import tomllib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp import web
from redis.exceptions import RedisError

from .lock import default_instance_id
from .manager import QueueManager
from .metrics import Event, feed_of, schedule_of
from .scheduler.declared import DeclaredSchedules
from .tasks import stop_task

logger = logging.getLogger("engine.alerts")

FIRING = "firing"
RESOLVED = "resolved"
MAX_PENDING = 100
CLAIM_TTL_MS = 7 * 24 * 3600 * 1000

_ALERTS = {
    "consecutive_failures",
    "stalled_after_s",
    "missed_ticks",
    "redis_down_after_s",
    "schedule_missing",
    "check_interval_s",
    "webhooks",
}
_WEBHOOK = {"url", "url_env", "timeout_s", "retries", "backoff_s", "max_backoff_s"}


def _number(where: str, value: Any, *, minimum: float = 0, integer: bool = False) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or value < minimum:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{where} must be {kind} >= {minimum}, got {value!r}")
    return value


def _unknown(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where notices are POSTed. ``url`` may carry a token: it is never logged (only
    its host is)."""

    url: str
    timeout_s: float = 5.0
    retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("alerts.webhooks.url must be an http(s) URL")
        if self.timeout_s <= 0 or self.backoff_s <= 0 or self.max_backoff_s < self.backoff_s:
            raise ValueError("alerts.webhooks: timeout_s, backoff_s must be > 0, max >= base")
        if self.retries < 0:
            raise ValueError("alerts.webhooks.retries must be >= 0")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "?"


@dataclass(frozen=True, slots=True)
class AlertConfig:
    consecutive_failures: int = 3
    stalled_after_s: float = 300.0
    missed_ticks: bool = True
    redis_down_after_s: float = 10.0
    schedule_missing: bool = True
    check_interval_s: float = 5.0
    webhooks: tuple[WebhookConfig, ...] = ()

    def __post_init__(self) -> None:
        _number("alerts.consecutive_failures", self.consecutive_failures, integer=True)
        _number("alerts.stalled_after_s", self.stalled_after_s)
        _number("alerts.redis_down_after_s", self.redis_down_after_s)
        if _number("alerts.check_interval_s", self.check_interval_s) == 0:
            raise ValueError("alerts.check_interval_s must be > 0")
        if not isinstance(self.missed_ticks, bool):
            raise ValueError("alerts.missed_ticks must be true or false")
        if not isinstance(self.schedule_missing, bool):
            raise ValueError("alerts.schedule_missing must be true or false")

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> AlertConfig:
        """Parse the ``[alerts]`` table; ``ValueError`` naming the field otherwise.

        A webhook gives ``url``, or ``url_env`` (the name of an environment variable that
        holds it, so a URL with a token stays out of the file).
        """
        env = os.environ if env is None else env
        _unknown("alerts", table, _ALERTS)
        hooks: list[WebhookConfig] = []
        raw_hooks = table.get("webhooks", [])
        if not isinstance(raw_hooks, list):
            raise ValueError("alerts.webhooks must be an array of tables ([[alerts.webhooks]])")
        for i, raw in enumerate(raw_hooks):
            where = f"alerts.webhooks[{i}]"
            if not isinstance(raw, Mapping):
                raise ValueError(f"{where} must be a table")
            _unknown(where, raw, _WEBHOOK)
            url = raw.get("url")
            if "url_env" in raw:
                url = env.get(str(raw["url_env"]))
                if not url:
                    raise ValueError(f"{where}.url_env: {raw['url_env']!r} is not set")
            if not isinstance(url, str):
                raise ValueError(f"{where}: url or url_env is required")
            options = {k: raw[k] for k in ("timeout_s", "backoff_s", "max_backoff_s") if k in raw}
            for k, v in options.items():
                _number(f"{where}.{k}", v)
            retries = _number(f"{where}.retries", raw.get("retries", 5), integer=True)
            hooks.append(WebhookConfig(url=url, retries=retries, **options))
        values = {k: table[k] for k in _ALERTS - {"webhooks"} if k in table}
        return cls(webhooks=tuple(hooks), **values)

    @classmethod
    def load(cls, path: str | Path, env: Mapping[str, str] | None = None) -> AlertConfig:
        """The ``[alerts]`` table of a TOML file (defaults when absent)."""
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        return cls.from_table(raw.get("alerts", {}), env)


@dataclass(frozen=True, slots=True)
class Notice:
    """One delivery: an incident opening (``firing``) or closing (``resolved``)."""

    status: str
    rule: str
    key: str
    summary: str
    started_ms: int
    queue: str | None = None
    schedule: str | None = None
    resolved_ms: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self, instance: str) -> dict[str, Any]:
        return {
            "status": self.status,
            "rule": self.rule,
            "key": self.key,
            "queue": self.queue,
            "schedule": self.schedule,
            "summary": self.summary,
            "startsAt": _iso(self.started_ms),
            "endsAt": _iso(self.resolved_ms),
            "details": dict(self.details),
            "instance": instance,
        }


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Incident:
    rule: str
    summary: str
    started_ms: int
    queue: str | None
    schedule: str | None
    # What every instance agrees on (the triggering event's stream id, the last completion):
    # the claims are keyed by it, so a slow instance cannot re-open a closed incident.
    id: str = ""


class AlertManager:
    """Evaluates the rules for one manager's queues and delivers notices.

    Responsibilities: (1) count failures and watch ticks from the event feed, (2) check
    backlogs and Redis every ``check_interval_s``, (3) claim each transition in Redis so
    one instance delivers it, (4) deliver to the log and the webhooks, in order, retried.
    """

    def __init__(
        self,
        manager: QueueManager,
        config: AlertConfig,
        *,
        instance_id: str | None = None,
    ) -> None:
        self.manager = manager
        self.config = config
        self.instance_id = instance_id or default_instance_id()
        self.key = f"{manager.prefix}:alerts"
        self.open: dict[str, _Incident] = {}  # what this instance believes is open
        self._failures: dict[str, int] = {}
        self._waiting_since: dict[str, int] = {}
        self._last_completed: dict[str, int] = {}
        self._redis_down_since: float | None = None
        self._unclaimed: set[str] = set()  # opened here, not yet claimed in Redis
        self._generation = 0  # counts local openings
        self._opened_gen: dict[str, int] = {}
        self._transitions: asyncio.Queue[tuple[str, str, _Incident]] = asyncio.Queue()
        self._outboxes = [asyncio.Queue[Notice](MAX_PENDING) for _ in config.webhooks]
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="engine-alerts-claim"),
            asyncio.create_task(self._check_loop(), name="engine-alerts-check"),
        ] + [
            asyncio.create_task(self._webhook_loop(hook, box), name="engine-alerts-webhook")
            for hook, box in zip(self.config.webhooks, self._outboxes, strict=True)
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*(stop_task(task) for task in tasks))
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- rules over events ---------------------------------------------------------------

    def observe(self, events: Sequence[Event]) -> None:
        """Feed listener (synchronous, no I/O): turn events into open/close requests."""
        n = self.config.consecutive_failures
        for ev in events:
            kind = ev.kind
            if kind == "completed":
                self._last_completed[ev.queue] = ev.ts_ms
                for subject in self._subjects(ev):
                    self._failures[subject] = 0
                    self._close(f"consecutive_failures:{subject}")
                self._close(f"stalled_queue:{ev.queue}")
            elif kind == "failed" and n:
                job_id = ev.fields.get("jobId", "")
                for subject in self._subjects(ev):
                    count = self._failures.get(subject, 0) + 1
                    self._failures[subject] = count
                    if count == n:
                        schedule = schedule_of(job_id)
                        what = f"schedule {schedule}" if subject.startswith("schedule:") else ""
                        label = what or f"queue {ev.queue}"
                        self._open(
                            f"consecutive_failures:{subject}",
                            _Incident(
                                "consecutive_failures",
                                f"{label}: {n} consecutive failed jobs (last: {job_id})",
                                ev.ts_ms,
                                ev.queue,
                                schedule if what else None,
                                ev.id,
                            ),
                        )
            elif kind == "missed" and self.config.missed_ticks:
                schedule = ev.fields.get("schedule", "")
                reason = ev.fields.get("reason", "")
                self._open(
                    f"missed_tick:{ev.queue}/{schedule}",
                    _Incident(
                        "missed_tick",
                        f"schedule {schedule} of queue {ev.queue} missed a tick ({reason})",
                        ev.ts_ms,
                        ev.queue,
                        schedule,
                        ev.id,
                    ),
                )
            elif kind == "fired":
                self._close(f"missed_tick:{ev.queue}/{ev.fields.get('schedule', '')}")

    @staticmethod
    def _subjects(ev: Event) -> list[str]:
        subjects = [f"queue:{ev.queue}"]
        schedule = schedule_of(ev.fields.get("jobId", ""))
        if schedule:
            subjects.append(f"schedule:{ev.queue}/{schedule}")
        return subjects

    def _open(self, key: str, incident: _Incident) -> None:
        if key not in self.open:
            self.open[key] = incident
            self._unclaimed.add(key)
            self._generation += 1
            self._opened_gen[key] = self._generation
            self._transitions.put_nowait((FIRING, key, incident))

    def _close(self, key: str) -> None:
        incident = self.open.pop(key, None)
        if incident is not None:
            self._transitions.put_nowait((RESOLVED, key, incident))

    # -- periodic checks -----------------------------------------------------------------

    async def check(self) -> None:
        """One round of the state rules: Redis reachable, stalled queues; and a refresh of
        which incidents are open cluster-wide."""
        queues = list(self.manager.queues.values())
        schedulers = self.manager.schedulers
        declared = [(queue, name) for queue, s in schedulers.items() for name in s.declared.names]
        # Keys this instance may be claiming while the read is in flight: the read cannot
        # tell whether they are closed elsewhere.
        in_flight = set(self._unclaimed)
        generation = self._generation
        try:
            # TIME on its own: it has no key, so a Cluster pipeline could not route it.
            sec, usec = await self.manager.client.time()
            async with self.manager.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.key)
                for q in queues:
                    q._queue_stats(pipe)
                    pipe.zrevrange(q.keys.completed, 0, 0, withscores=True)
                for queue, name in declared:
                    pipe.exists(self.manager.store.keys(queue).schedule(name))
                results = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._redis_unreachable(type(exc).__name__)
            return
        self._redis_reachable()
        now_ms = int(sec) * 1000 + int(usec) // 1000
        in_flight |= {k for k, g in self._opened_gen.items() if g > generation}
        self._sync_open(results[0], in_flight | self._unclaimed)
        per = 7
        for i, q in enumerate(queues):
            chunk = results[1 + i * per : 1 + (i + 1) * per]
            self._check_stalled(q.name, q._stats_from(chunk[:6]).waiting, chunk[6], now_ms)
        found = results[1 + len(queues) * per :]
        for (queue, name), exists in zip(declared, found, strict=True):
            self._check_missing(queue, name, bool(exists), schedulers[queue].declared, now_ms)

    def _check_missing(
        self, queue: str, name: str, exists: bool, declared: DeclaredSchedules, now_ms: int
    ) -> None:
        key = f"schedule_missing:{queue}/{name}"
        if exists or not self.config.schedule_missing:
            self._close(key)
            return
        self._open(
            key,
            _Incident(
                "schedule_missing",
                f"schedule {name} of queue {queue} is not registered in Redis (data lost?); "
                "its declaring instances register it again",
                now_ms,
                queue,
                name,
                # Every declaring instance knows the lost registration by when it was written.
                str(declared.stored_at(name)),
            ),
        )

    def _sync_open(self, remote: Mapping[str, str], in_flight: set[str]) -> None:
        """Adopt incidents another instance opened (so this one can close them) and drop
        those another instance closed (so this one can open them again)."""
        for key, raw in remote.items():
            if key not in self.open:
                try:
                    d = orjson.loads(raw)
                    self.open[key] = _Incident(
                        d["rule"],
                        d["summary"],
                        int(d["startedMs"]),
                        d["queue"],
                        d["schedule"],
                        d["id"],
                    )
                except (ValueError, KeyError, TypeError):
                    continue
        for key in list(self.open):
            if key not in remote and key != "redis_down" and key not in in_flight:
                del self.open[key]

    def _check_stalled(self, queue: str, waiting: int, newest: Any, now_ms: int) -> None:
        limit_ms = self.config.stalled_after_s * 1000
        if not limit_ms:
            return
        if waiting == 0:
            self._waiting_since.pop(queue, None)
            self._close(f"stalled_queue:{queue}")
            return
        since = self._waiting_since.setdefault(queue, now_ms)
        if newest:
            self._last_completed[queue] = max(self._last_completed.get(queue, 0), int(newest[0][1]))
        idle_from = max(since, self._last_completed.get(queue, 0))
        if now_ms - idle_from < limit_ms:
            self._close(f"stalled_queue:{queue}")
            return
        self._open(
            f"stalled_queue:{queue}",
            _Incident(
                "stalled_queue",
                f"queue {queue}: {waiting} jobs waiting and none completed for "
                f"{(now_ms - idle_from) // 1000} s",
                now_ms,
                queue,
                None,
                str(self._last_completed.get(queue, 0)),
            ),
        )

    def _redis_unreachable(self, error: str) -> None:
        limit = self.config.redis_down_after_s
        now = time.monotonic()
        if self._redis_down_since is None:
            self._redis_down_since = now
        if limit and now - self._redis_down_since >= limit:
            self._open(
                "redis_down",
                _Incident(
                    "redis_down",
                    f"Redis unreachable from {self.instance_id} for {limit:g} s ({error})",
                    _now_ms(),
                    None,
                    None,
                    "local",
                ),
            )

    def _redis_reachable(self) -> None:
        self._redis_down_since = None
        self._close("redis_down")

    async def _check_loop(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                logger.exception("Alert check failed")
            await asyncio.sleep(self.config.check_interval_s)

    # -- claim and deliver ---------------------------------------------------------------

    async def _claim(self, status: str, key: str, incident: _Incident) -> bool:
        """True if this instance is the one to deliver this transition."""
        if key == "redis_down":
            return True
        client = self.manager.client
        claim = f"{self.key}:{key}:{incident.id}"
        if status == FIRING:
            if not await client.set(claim, self.instance_id, nx=True, px=CLAIM_TTL_MS):
                return False
            record = {
                "rule": incident.rule,
                "summary": incident.summary,
                "startedMs": incident.started_ms,
                "queue": incident.queue,
                "schedule": incident.schedule,
                "id": incident.id,
                "by": self.instance_id,
            }
            await client.hset(self.key, key, orjson.dumps(record).decode())
            return True
        if not await client.set(f"{claim}:resolved", self.instance_id, nx=True, px=CLAIM_TTL_MS):
            return False
        await client.hdel(self.key, key)
        return True

    async def _claim_loop(self) -> None:
        while True:
            status, key, incident = await self._transitions.get()
            while True:
                try:
                    won = await self._claim(status, key, incident)
                    break
                except (RedisError, OSError):
                    await asyncio.sleep(self.config.check_interval_s)
            if status == FIRING:
                self._unclaimed.discard(key)
            if won:
                self._deliver(status, key, incident)

    def _deliver(self, status: str, key: str, incident: _Incident) -> None:
        notice = Notice(
            status=status,
            rule=incident.rule,
            key=key,
            summary=incident.summary,
            started_ms=incident.started_ms,
            queue=incident.queue,
            schedule=incident.schedule,
            resolved_ms=_now_ms() if status == RESOLVED else None,
        )
        if status == FIRING:
            logger.error("ALERT firing [%s] %s", notice.rule, notice.summary)
        else:
            logger.warning("ALERT resolved [%s] %s", notice.rule, notice.summary)
        for hook, box in zip(self.config.webhooks, self._outboxes, strict=True):
            if box.full():
                dropped = box.get_nowait()
                logger.warning(
                    "Alert webhook %s is behind: dropped notice %s %s",
                    hook.host,
                    dropped.status,
                    dropped.key,
                )
            box.put_nowait(notice)

    async def _webhook_loop(self, hook: WebhookConfig, box: asyncio.Queue[Notice]) -> None:
        while True:
            notice = await box.get()
            await self._post(hook, notice)

    async def _post(self, hook: WebhookConfig, notice: Notice) -> bool:
        assert self._session is not None
        body = orjson.dumps(notice.to_json(self.instance_id))
        delay = hook.backoff_s
        for attempt in range(hook.retries + 1):
            outcome = ""
            try:
                async with self._session.post(
                    hook.url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=hook.timeout_s),
                    allow_redirects=False,
                ) as resp:
                    if 200 <= resp.status < 300:
                        return True
                    outcome = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
            if attempt < hook.retries:
                logger.info(
                    "Alert webhook %s: %s; retry %d in %.1fs",
                    hook.host,
                    outcome,
                    attempt + 1,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, hook.max_backoff_s)
        logger.warning(
            "Alert webhook %s: gave up on %s %s (%s)", hook.host, notice.status, notice.key, outcome
        )
        return False


ALERTS = web.AppKey("engine_alerts", AlertManager)


def setup_alerts(
    app: web.Application,
    manager: QueueManager,
    config: AlertConfig,
    *,
    instance_id: str | None = None,
) -> AlertManager:
    """Run the alert rules with the app (sharing its event feed); stopped on cleanup."""
    alerts = AlertManager(manager, config, instance_id=instance_id)
    feed_of(app, manager).subscribe(alerts.observe)
    app[ALERTS] = alerts

    async def alerts_ctx(_app: web.Application) -> AsyncIterator[None]:
        await alerts.start()
        yield
        await alerts.stop()

    app.cleanup_ctx.append(alerts_ctx)
    return alerts


__all__ = ["ALERTS", "AlertConfig", "AlertManager", "Notice", "WebhookConfig", "setup_alerts"]

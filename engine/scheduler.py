"""Distributed cron schedules: definitions, registration, the leader loop, and their state.

One :class:`Scheduler` per queue and instance. Its responsibilities:

1. Hold or contend for the queue's :class:`~engine.lock.LeaderLease`; only the holder fires.
2. As leader, sleep until the earliest ``next`` fire time of the queue's schedules (or the
   next lease renewal), never polling per second; a local change wakes it at once.
3. Fire through ``fire_schedule-10.lua``: fenced by token and epoch, a compare-and-set on
   the schedule's next fire time and fingerprint, one job per fired tick with the
   deterministic id ``<schedule>:<tick ms>``, every fired or dropped tick in the ledger.

Times are Redis ``TIME``: the leader's estimate (last server time seen plus local monotonic
time elapsed) only decides when to *try*; the script refuses a tick that is not due by the
server clock, so a wrong local estimate can delay a fire but never make it early or double.

Schedules live in Redis with their job payload and policies, so whichever instance leads
fires every schedule of the queue, even one it was not configured with (sidekiq#4078).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

import orjson

from .connection import execute_acked, queue_on_key_node
from .cron import InvalidCron, Schedule, next_fire, parse_schedule
from .errors import ErrorCode, ScheduleNotFound
from .job import Job
from .keys import validate_queue_name
from .lock import LeaderLease, LeaseConfig, current_leader
from .options import JobOptions
from .queue import Queue
from .store import Store

logger = logging.getLogger("engine.scheduler")

MisfirePolicy = Literal["skip", "once", "all"]
OverlapPolicy = Literal["allow", "skip"]
MISFIRE_POLICIES: tuple[str, ...] = ("skip", "once", "all")
OVERLAP_POLICIES: tuple[str, ...] = ("allow", "skip")

DEFAULT_MISFIRE_GRACE_MS = 60_000
# Below this an on-time fire (a few ms of scheduling jitter) could count as a misfire.
MIN_MISFIRE_GRACE_MS = 100
DEFAULT_LEDGER_LEN = 1000
MAX_FIRES_PER_CALL = 200  # catch-up beyond this continues in the next call
MAX_MISSED_LISTED = 1000  # dropped ticks beyond this are counted, not listed one by one
MAX_TICK_SCAN = 100_000  # bound on the due-tick scan after a very long outage
STATE_WINDOW = 50  # ledger entries read to derive last success / consecutive failures
ERROR_BACKOFF_S = (0.05, 2.0)


def _validate_name(name: str) -> str:
    try:
        return validate_queue_name(name)
    except ValueError:
        raise ValueError(
            f"schedule name {name!r} is invalid: use 1-100 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        ) from None


@dataclass(frozen=True, slots=True)
class ScheduleDefinition:
    """A named schedule of one queue: when it fires, what job it enqueues, and its policies.

    ``misfire`` decides what happens to ticks that passed with no leader to fire them:
    ``skip`` fires none late (only the latest, and only if at most ``misfire_grace_ms``
    late), ``once`` fires one catch-up run for the latest, ``all`` fires every tick at most
    ``misfire_grace_ms`` late. ``overlap="skip"`` drops a tick while the previous run of the
    schedule is still waiting, active or backing off. Every dropped tick is a ``missed``
    event and a ledger entry.
    """

    name: str
    queue: str
    schedule: Schedule
    data: Any = None
    options: JobOptions = field(default_factory=JobOptions)
    misfire: MisfirePolicy = "once"
    misfire_grace_ms: int = DEFAULT_MISFIRE_GRACE_MS
    overlap: OverlapPolicy = "allow"
    job_name: str = ""

    def __post_init__(self) -> None:
        _validate_name(self.name)
        validate_queue_name(self.queue)
        if self.misfire not in MISFIRE_POLICIES:
            raise ValueError(f"misfire must be one of {', '.join(MISFIRE_POLICIES)}")
        if self.overlap not in OVERLAP_POLICIES:
            raise ValueError(f"overlap must be one of {', '.join(OVERLAP_POLICIES)}")
        grace = self.misfire_grace_ms
        if isinstance(grace, bool) or not isinstance(grace, int) or grace < MIN_MISFIRE_GRACE_MS:
            raise ValueError(
                f"misfire_grace_ms must be an integer of at least {MIN_MISFIRE_GRACE_MS}, "
                f"got {grace!r}"
            )
        if self.options.job_id is not None:
            raise ValueError("job options of a schedule may not set job_id (it is <name>:<tick>)")
        if self.options.delay:
            raise ValueError("job options of a schedule may not set delay")
        if not isinstance(self.job_name, str) or len(self.job_name) > 200:
            raise ValueError("job_name must be a string of at most 200 characters")
        try:
            orjson.dumps(self.data)
        except TypeError as exc:
            raise ValueError(f"data must be JSON-serialisable: {exc}") from None

    @property
    def effective_job_name(self) -> str:
        return self.job_name or self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queue": self.queue,
            "schedule": self.schedule.to_dict(),
            "data": self.data,
            "options": self.options.to_json(),
            "misfire": self.misfire,
            "misfire_grace_ms": self.misfire_grace_ms,
            "overlap": self.overlap,
            "job_name": self.job_name,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScheduleDefinition:
        return cls(
            name=d["name"],
            queue=d["queue"],
            schedule=Schedule.from_dict(d["schedule"]),
            data=d.get("data"),
            options=JobOptions.parse(d.get("options") or {}),
            misfire=d.get("misfire", "once"),
            misfire_grace_ms=d.get("misfire_grace_ms", DEFAULT_MISFIRE_GRACE_MS),
            overlap=d.get("overlap", "allow"),
            job_name=d.get("job_name", ""),
        )

    def fingerprint(self) -> str:
        """Stable across instances: same definition, same fingerprint."""
        canonical = orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(canonical).hexdigest()[:32]


def define_schedule(
    name: str,
    queue: str,
    *,
    cron: str | None = None,
    every_ms: int | None = None,
    tz: str = "UTC",
    start_ms: int | None = None,
    end_ms: int | None = None,
    data: Any = None,
    opts: Mapping[str, Any] | JobOptions | None = None,
    misfire: str = "once",
    misfire_grace_ms: int = DEFAULT_MISFIRE_GRACE_MS,
    overlap: str = "allow",
    job_name: str = "",
) -> ScheduleDefinition:
    """Validate everything once and build a :class:`ScheduleDefinition`.

    Raises ``ValueError`` (``InvalidCron`` for the cron / zone / interval) naming the field.
    """
    schedule = parse_schedule(cron=cron, every_ms=every_ms, tz=tz, start_ms=start_ms, end_ms=end_ms)
    return ScheduleDefinition(
        name=name,
        queue=queue,
        schedule=schedule,
        data=data,
        options=JobOptions.parse(opts),
        misfire=cast(MisfirePolicy, misfire),
        misfire_grace_ms=misfire_grace_ms,
        overlap=cast(OverlapPolicy, overlap),
        job_name=job_name,
    )


# -- pure fire planning ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What one fire call does: ticks to enqueue, ticks to drop, the next fire time."""

    fire: tuple[int, ...]
    missed: tuple[int, ...]
    extra_missed: int
    next_ms: int | None


def plan_fires(definition: ScheduleDefinition, expected_ms: int, now_ms: int) -> FirePlan:
    """Apply the misfire policy to the ticks from ``expected_ms`` up to ``now_ms``.

    Pure: the same inputs give the same plan on every instance.
    """
    schedule = definition.schedule
    due: list[int] = []
    tick: int | None = expected_ms
    while tick is not None and tick <= now_ms and len(due) < MAX_TICK_SCAN:
        due.append(tick)
        tick = next_fire(schedule, tick)
    uncounted = 0
    if tick is not None and tick <= now_ms:
        # An outage longer than the scan: count the rest and jump to the latest due tick.
        latest = _latest_due(schedule, now_ms, gap=due[-1] - due[-2])
        # For cron, at least one more; the exact count is not worth the scan.
        every = schedule.every_ms
        uncounted = (latest - tick) // every if every is not None else 1
        due.append(latest)
        tick = next_fire(schedule, latest)
    grace = definition.misfire_grace_ms
    fire: list[int]
    if not due:
        fire, missed = [], []
    elif definition.misfire == "all":
        fire = [d for d in due if now_ms - d <= grace]
        missed = [d for d in due if now_ms - d > grace]
        if len(fire) > MAX_FIRES_PER_CALL:
            tick = fire[MAX_FIRES_PER_CALL]
            fire = fire[:MAX_FIRES_PER_CALL]
            uncounted = 0
    elif definition.misfire == "once":
        fire, missed = due[-1:], due[:-1]
    else:  # skip
        fire = due[-1:] if now_ms - due[-1] <= grace else []
        missed = due[: len(due) - len(fire)]
    extra = uncounted + max(0, len(missed) - MAX_MISSED_LISTED)
    return FirePlan(tuple(fire), tuple(missed[:MAX_MISSED_LISTED]), extra, tick)


def _latest_due(schedule: Schedule, now_ms: int, gap: int) -> int:
    """The last fire time at or before ``now_ms`` (exists: a due tick lies before it)."""
    lookback = max(gap, 1)
    while True:
        found: int | None = None
        tick = next_fire(schedule, now_ms - lookback)
        while tick is not None and tick <= now_ms:
            found, tick = tick, next_fire(schedule, tick)
        if found is not None:
            return found
        lookback *= 2


# -- registration and admin ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpsertResult:
    action: Literal["created", "updated", "unchanged"]
    next_fire_ms: int | None


async def server_time_ms(store: Store) -> int:
    sec, usec = await store.client.time()
    return int(sec) * 1000 + int(usec) // 1000


async def upsert_schedule(store: Store, definition: ScheduleDefinition) -> UpsertResult:
    """Register a schedule; idempotent across instances (see ``upsert_schedule-3.lua``)."""
    keys = store.keys(definition.queue)
    now = await server_time_ms(store)
    nxt = next_fire(definition.schedule, now)
    code, stored_next = await store.scripts.upsert_schedule(
        [keys.schedules, keys.schedule(definition.name), keys.events],
        [
            definition.name,
            definition.fingerprint(),
            orjson.dumps(definition.to_dict()).decode(),
            definition.effective_job_name,
            orjson.dumps(definition.data).decode(),
            orjson.dumps(definition.options.to_json()).decode(),
            definition.options.priority,
            definition.overlap,
            "" if nxt is None else nxt,
            store.max_events,
        ],
    )
    action: Literal["created", "updated", "unchanged"] = ("unchanged", "created", "updated")[
        int(code)
    ]
    if action != "unchanged":
        logger.info(
            "Schedule %s %s on queue %s (next fire %s)",
            definition.name,
            action,
            definition.queue,
            _iso(nxt),
        )
    return UpsertResult(action, int(stored_next) if stored_next else None)


async def set_schedule_paused(store: Store, queue: str, name: str, paused: bool) -> bool:
    """Pause (no fires; ticks while paused are neither fired nor missed) or resume (next
    fire recomputed from now: no catch-up). Returns False if it was already so."""
    keys = store.keys(queue)
    key = keys.schedule(name)
    client = store.client
    raw, is_paused = await client.hmget(key, "def", "paused")
    if raw is None:
        raise ScheduleNotFound(f"schedule {name!r} not found in queue {queue!r}")
    if bool(is_paused) == paused:
        return False
    async with client.pipeline(transaction=True) as pipe:
        if paused:
            pipe.hset(key, "paused", "1")
            pipe.zadd(keys.schedules, {name: float("inf")})
        else:
            definition = ScheduleDefinition.from_dict(orjson.loads(raw))
            nxt = next_fire(definition.schedule, await server_time_ms(store))
            pipe.hdel(key, "paused")
            pipe.hset(key, "next", "" if nxt is None else nxt)
            pipe.zadd(keys.schedules, {name: float("inf") if nxt is None else nxt})
        pipe.xadd(
            keys.events,
            {"event": "schedule", "schedule": name, "action": "paused" if paused else "resumed"},
            maxlen=store.max_events,
            approximate=True,
        )
        await pipe.execute()
    logger.info("Schedule %s of queue %s %s", name, queue, "paused" if paused else "resumed")
    return True


async def remove_schedule(store: Store, queue: str, name: str) -> bool:
    """Delete a schedule (its ledger is kept). Returns False if it did not exist."""
    keys = store.keys(queue)
    async with store.client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.schedule(name))
        pipe.zrem(keys.schedules, name)
        removed, _ = await pipe.execute()
    return bool(removed)


async def list_schedules(store: Store, queue: str) -> list[str]:
    return list(await store.client.zrange(store.keys(queue).schedules, 0, -1))


async def run_schedule_now(queue: Queue, name: str, actor: str = "") -> Job:
    """Add an out-of-band run of the schedule's job (generated id); the schedule's next
    fire time does not move."""
    key = queue.keys.schedule(name)
    job_name, data, opts = await queue.store.client.hmget(key, "jobName", "data", "opts")
    if job_name is None:
        raise ScheduleNotFound(f"schedule {name!r} not found in queue {queue.name!r}")
    job = await queue.add(orjson.loads(data), JobOptions.parse(orjson.loads(opts)), name=job_name)
    logger.info("Schedule %s run now as job %s%s", name, job.id, f" by {actor}" if actor else "")
    return job


# -- state ---------------------------------------------------------------------------------


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What an operator wants to know about one schedule. Times are epoch ms (Redis clock)."""

    name: str
    queue: str
    cron: str | None
    every_ms: int | None
    tz: str
    paused: bool
    next_fire_ms: int | None
    last_fire_ms: int | None
    last_job_id: str | None
    last_success_ms: int | None
    fired_count: int
    missed_count: int
    consecutive_failures: int
    leader: str | None
    leader_epoch: int
    misfire: str
    overlap: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queue": self.queue,
            "cron": self.cron,
            "everyMs": self.every_ms,
            "tz": self.tz,
            "paused": self.paused,
            "nextFire": _iso(self.next_fire_ms),
            "nextFireMs": self.next_fire_ms,
            "lastFire": _iso(self.last_fire_ms),
            "lastFireMs": self.last_fire_ms,
            "lastJobId": self.last_job_id,
            "lastSuccess": _iso(self.last_success_ms),
            "lastSuccessMs": self.last_success_ms,
            "firedCount": self.fired_count,
            "missedCount": self.missed_count,
            "consecutiveFailures": self.consecutive_failures,
            "leader": self.leader,
            "leaderEpoch": self.leader_epoch,
            "misfire": self.misfire,
            "overlap": self.overlap,
        }


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


async def get_schedule_state(store: Store, queue: str, name: str) -> ScheduleState:
    """State of one schedule in two round trips. Last success and consecutive failures come
    from the outcome of the newest ``STATE_WINDOW`` fired jobs still in Redis (a run still
    in progress is skipped; a cleaned-up one ends the count)."""
    keys = store.keys(queue)
    client = store.client
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.schedule(name))
        pipe.xrevrange(keys.schedule_ledger(name), count=STATE_WINDOW)
        h, ledger = await pipe.execute()
    if not h:
        raise ScheduleNotFound(f"schedule {name!r} not found in queue {queue!r}")
    leader, epoch = await current_leader(store, queue)
    job_ids = [f["job"] for _, f in ledger if f.get("kind") == "fired" and f.get("job")]
    outcomes: list[Any] = []
    if job_ids:
        async with client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.zscore(keys.completed, job_id)
                pipe.zscore(keys.failed, job_id)
                pipe.exists(keys.job(job_id))
            outcomes = await pipe.execute()
    last_success: int | None = None
    failures = 0
    for i in range(len(job_ids)):
        done, failed, exists = outcomes[3 * i : 3 * i + 3]
        if done is not None:
            last_success = int(done)
            break
        if failed is not None:
            failures += 1
        elif not exists:
            break  # cleaned up: outcome unknown
    definition = orjson.loads(h["def"])
    sched = definition["schedule"]
    return ScheduleState(
        name=name,
        queue=queue,
        cron=sched.get("cron"),
        every_ms=sched.get("every_ms"),
        tz=sched.get("tz", "UTC"),
        paused="paused" in h,
        next_fire_ms=None if "paused" in h else _opt_int(h.get("next")),
        last_fire_ms=_opt_int(h.get("last")),
        last_job_id=h.get("lastJob") or None,
        last_success_ms=last_success,
        fired_count=int(h.get("fired", 0)),
        missed_count=int(h.get("missed", 0)),
        consecutive_failures=failures,
        leader=leader,
        leader_epoch=epoch,
        misfire=definition.get("misfire", "once"),
        overlap=definition.get("overlap", "allow"),
    )


# -- the leader loop -------------------------------------------------------------------------


class Scheduler:
    """Contends for one queue's leader lease and, while leader, fires its due schedules.

    ``clock_offset_ms`` shifts this instance's estimate of server time. It exists for
    tests: an instance that believes it is later than it is must still fire nothing early
    (the script refuses, the loop re-syncs and waits).
    """

    def __init__(
        self,
        store: Store,
        queue: str,
        lease: LeaseConfig | None = None,
        *,
        instance_id: str | None = None,
        clock_offset_ms: int = 0,
        ledger_len: int = DEFAULT_LEDGER_LEN,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self.store = store
        # Opt-in: each fire is followed by WAIT on its connection (RedisSettings.wait_replicas).
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.queue = validate_queue_name(queue)
        self.keys = store.keys(queue)
        self.lease = LeaderLease(store, queue, lease, instance_id=instance_id)
        self.clock_offset_ms = clock_offset_ms
        self.ledger_len = ledger_len
        self.fired = 0
        self.missed = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._server_ms = 0
        self._server_mono = 0.0
        self._next_renew = 0.0
        self._definitions: dict[str, ScheduleDefinition] = {}  # by fingerprint

    def __repr__(self) -> str:
        return f"Scheduler({self.queue!r}, {self.lease.instance_id!r})"

    # lifecycle

    def start(self) -> Scheduler:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"scheduler:{self.queue}")
        return self

    def wake(self) -> None:
        """Re-read the schedules now (a local registration, pause or resume)."""
        self._wake.set()

    async def close(self) -> None:
        """Stop firing and release the lease so another instance takes over at once."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.lease.release()

    # time

    def _sync(self, server_ms: int) -> None:
        self._server_ms = server_ms
        self._server_mono = time.monotonic()

    def now_ms(self) -> int:
        """Estimated Redis server time: the last one seen plus local monotonic time since."""
        elapsed = time.monotonic() - self._server_mono
        return self._server_ms + int(elapsed * 1000) + self.clock_offset_ms

    # loop

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            try:
                delay_s = await self._step()
                failures = 0
            except Exception:  # a dead loop fires nothing: log, back off, carry on
                failures += 1
                logger.exception("Scheduler of queue %s failed; retrying", self.queue)
                lo, hi = ERROR_BACKOFF_S
                delay_s = min(hi, lo * 2**failures)
            if delay_s > 0 and not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay_s)
            self._wake.clear()

    async def _step(self) -> float:
        """One decision; returns how long to sleep (a wake-up cuts it short)."""
        lease = self.lease
        renew_s = lease.config.renew_interval_ms / 1000
        if not lease.is_leader:
            if not await lease.acquire():
                # Retry just after the holder's lease runs out, at the latest one renewal
                # interval from now (it may be released earlier).
                return min(renew_s, (lease.holder_ttl_ms + 1) / 1000)
            self._sync(lease.server_now_ms)
            self._next_renew = time.monotonic() + renew_s
        elif time.monotonic() >= self._next_renew:
            if not await lease.renew():
                return 0.0
            self._sync(lease.server_now_ms)
            self._next_renew = time.monotonic() + renew_s
        until_renew = max(0.0, self._next_renew - time.monotonic())

        async with self.store.client.pipeline(transaction=False) as pipe:
            pipe.zrange(self.keys.schedules, 0, 0, withscores=True)
            queue_on_key_node(pipe, self.keys.schedules, "TIME")  # pipe.time() fails on Cluster
            earliest, (sec, usec) = await pipe.execute()
        self._sync(int(sec) * 1000 + int(usec) // 1000)
        if not earliest or earliest[0][1] == float("inf"):
            return until_renew
        name, due = earliest[0][0], int(earliest[0][1])
        wait_ms = due - self.now_ms()
        if wait_ms > 0:
            return min(wait_ms / 1000, until_renew, lease.remaining_s())
        return await self._fire(name, due)

    def _definition(self, fingerprint: str, raw: str) -> ScheduleDefinition:
        found = self._definitions.get(fingerprint)
        if found is None:
            if len(self._definitions) > 256:
                self._definitions.clear()
            found = ScheduleDefinition.from_dict(orjson.loads(raw))
            self._definitions[fingerprint] = found
        return found

    async def _fire(self, name: str, due: int) -> float:
        keys = self.keys
        raw, fingerprint, stored_next, paused = await self.store.client.hmget(
            keys.schedule(name), "def", "fp", "next", "paused"
        )
        if raw is None:  # deleted: drop the stale entry so it is not due forever
            await self.store.client.zrem(keys.schedules, name)
            return 0.0
        if paused or stored_next != str(due):
            return 0.0  # changed meanwhile; re-read
        try:
            definition = self._definition(fingerprint, raw)
        except (ValueError, InvalidCron, KeyError) as exc:
            # Written by a newer or broken instance: never fire, never spin on it.
            logger.error("Schedule %s of queue %s is unreadable: %s", name, self.queue, exc)
            return self.lease.config.renew_interval_ms / 1000
        now = self.now_ms()
        for _ in range(2):
            plan = plan_fires(definition, due, now)
            if not self.lease.is_leader:
                return 0.0
            code, missed, server_now = await self._call_fire(name, fingerprint, due, plan)
            self._sync(server_now)
            if code == ErrorCode.NOT_LEADER:
                self.lease.lost()
                return 0.0
            if code == ErrorCode.SCHEDULE_CHANGED:
                return 0.0
            if code != ErrorCode.NOT_DUE:
                break
            # Our estimate ran ahead of the server clock. Wait by the server's time, or
            # plan again with it if the first tick is due after all.
            if due > server_now:
                return (due - server_now) / 1000
            now = server_now
        else:
            return 0.0
        self.fired += code
        self.missed += missed
        if code:
            logger.info(
                "Schedule %s fired %d tick(s) on queue %s (last %s)",
                name,
                code,
                self.queue,
                _iso(plan.fire[-1]) if plan.fire else None,
            )
        if missed:
            logger.warning("Schedule %s of queue %s missed %d tick(s)", name, self.queue, missed)
        return 0.0

    async def _call_fire(
        self, name: str, fingerprint: str, due: int, plan: FirePlan
    ) -> tuple[int, int, int]:
        keys = self.keys
        fire_keys = [
            keys.lease,
            keys.meta,
            keys.schedules,
            keys.schedule(name),
            keys.schedule_ledger(name),
            keys.wait,
            keys.active,
            keys.delayed,
            keys.events,
            keys.marker,
        ]
        fire_args: list[str | int] = [
            self.lease.token,
            self.lease.epoch,
            name,
            fingerprint,
            due,
            "" if plan.next_ms is None else plan.next_ms,
            ",".join(map(str, plan.fire)),
            ",".join(map(str, plan.missed)),
            plan.extra_missed,
            keys.job_prefix,
            self.store.max_events,
            self.ledger_len,
        ]
        if not self.wait_replicas:
            result = await self.store.scripts.fire_schedule(fire_keys, fire_args)
        else:
            async with self.store.client.pipeline(transaction=False) as pipe:
                await self.store.scripts.fire_schedule(fire_keys, fire_args, client=pipe)
                (result,), acked = await execute_acked(
                    self.store.client, pipe, self.wait_replicas, self.wait_timeout_ms, keys.meta
                )
            if acked < self.wait_replicas and int(result[0]) > 0:
                # Fired on the primary; a failover now could roll the fire back and let
                # the next leader fire the tick again (docs/OPERATIONS.md).
                logger.warning(
                    "Schedule %s of queue %s: fire acknowledged by %d of %d replica(s)",
                    name, self.queue, acked, self.wait_replicas,
                )  # fmt: skip
        code, missed, server_now = (int(v) for v in result)
        return code, missed, server_now


__all__ = [
    "FirePlan",
    "ScheduleDefinition",
    "ScheduleState",
    "Scheduler",
    "UpsertResult",
    "define_schedule",
    "get_schedule_state",
    "list_schedules",
    "plan_fires",
    "remove_schedule",
    "run_schedule_now",
    "set_schedule_paused",
    "upsert_schedule",
]

"""The leader loop of one queue: contend for the lease, sleep until the earliest due
schedule, fire it through ``fire_schedule``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import orjson

from .. import tracing
from ..connection import execute_acked, queue_on_key_node
from ..cron import next_fire
from ..errors import ErrorCode
from ..keys import validate_queue_name
from ..lock import LeaderLease, LeaseConfig
from ..logs import job_fields
from ..store import Store
from .admin import clear_aside, set_aside
from .declared import DeclaredSchedules
from .definition import DEFAULT_LEDGER_LEN, ERROR_BACKOFF_S, ScheduleDefinition
from .planning import FirePlan, plan_fires
from .state import iso_ms

logger = logging.getLogger("engine.scheduler")


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
        self._next_check = 0.0
        self._definitions: dict[str, ScheduleDefinition] = {}  # by fingerprint
        # Schedules whose stored definition this instance cannot read: name -> fingerprint.
        self._aside: dict[str, str] = {}
        self.declared = DeclaredSchedules(store, queue)
        self.started_at = 0.0  # monotonic; 0 until started

    def __repr__(self) -> str:
        return f"Scheduler({self.queue!r}, {self.lease.instance_id!r})"

    # lifecycle

    def declare(self, definition: ScheduleDefinition, stored_at_ms: int) -> None:
        """Keep ``definition`` registered (see :mod:`engine.scheduler.declared`):
        ``stored_at_ms`` is the ``UpsertResult.stored_at_ms`` of its registration."""
        self.declared.add(definition, stored_at_ms)

    @property
    def aside(self) -> list[str]:
        """Schedules this instance set aside (their definition cannot be read here)."""
        return list(self._aside)

    def start(self) -> Scheduler:
        if self._task is None:
            self.started_at = time.monotonic()
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
        if time.monotonic() >= self._next_check:
            # Leader or not, once per renewal interval: well within one lease TTL.
            self._next_check = time.monotonic() + renew_s
            await self._check_registrations()
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
            # Enough entries to get past every schedule set aside here.
            pipe.zrange(self.keys.schedules, 0, len(self._aside), withscores=True)
            queue_on_key_node(pipe, self.keys.schedules, "TIME")  # pipe.time() fails on Cluster
            earliest, (sec, usec) = await pipe.execute()
        self._sync(int(sec) * 1000 + int(usec) // 1000)
        candidates = [(n, score) for n, score in earliest if n not in self._aside]
        if not candidates or candidates[0][1] == float("inf"):
            return until_renew
        name, due = candidates[0][0], int(candidates[0][1])
        wait_ms = due - self.now_ms()
        if wait_ms > 0:
            return min(wait_ms / 1000, until_renew, lease.remaining_s())
        return await self._fire(name, due)

    async def _check_registrations(self) -> None:
        await self.declared.check()
        if self._aside:
            # A schedule set aside comes back when its definition changes or it is removed.
            names = list(self._aside)
            async with self.store.client.pipeline(transaction=False) as pipe:
                for n in names:
                    pipe.hget(self.keys.schedule(n), "fp")
                fps = await pipe.execute()
            for n, fp in zip(names, fps, strict=True):
                if fp != self._aside[n]:
                    del self._aside[n]

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
        raw, fingerprint, stored_next, paused, last_job, aside = await self.store.client.hmget(
            keys.schedule(name), "def", "fp", "next", "paused", "lastJob", "aside"
        )
        if raw is None:  # deleted: drop the stale entry so it is not due forever
            await self.store.client.zrem(keys.schedules, name)
            return 0.0
        if paused or stored_next != str(due):
            return 0.0  # changed meanwhile; re-read
        try:
            definition = self._definition(fingerprint, raw)
            if definition.name != name or definition.queue != self.queue:
                raise ValueError(f"definition is of {definition.queue}/{definition.name}")
        except (ValueError, TypeError, KeyError) as exc:  # InvalidCron is a ValueError
            # A zone missing from this host's tzdata, a definition from a newer version:
            # set it aside (it would otherwise be the earliest due forever) and go on.
            self._aside[name] = fingerprint or ""
            reason = f"{type(exc).__name__}: {exc}"
            if aside != reason:
                await set_aside(self.store, self.queue, name, reason, self.lease.instance_id)
            return 0.0
        if aside is not None:
            await clear_aside(self.store, self.queue, name, self.lease.instance_id)
        now = self.now_ms()
        for _ in range(2):
            try:
                plan = await self._plan(definition, due, now)
            except Exception as exc:  # one broken schedule must not stop the others
                self._aside[name] = fingerprint or ""
                await set_aside(
                    self.store, self.queue, name, f"planning failed: {exc!r}",
                    self.lease.instance_id,
                )  # fmt: skip
                return 0.0
            # Planning may have taken a while: act only on a lease still valid now, renewed
            # first if its renewal fell due meanwhile.
            if not self.lease.is_leader:
                return 0.0
            if time.monotonic() >= self._next_renew:
                return 0.0  # the next step renews, then plans again
            attributes = {"engine.queue": self.queue, "engine.ticks": len(plan.fire)}
            with tracing.span(f"fire {name}", attributes):
                reply = await self._call_fire(name, fingerprint, due, plan, last_job or "")
            code, missed, server_now, flags = reply
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
        if flags & 1:
            # The client re-sent the call after its first copy was applied (a lost reply):
            # the ticks are fired, this copy changed nothing.
            logger.info("Schedule %s of queue %s: fire already applied (resend)", name, self.queue)
            return 0.0
        self.fired += code
        self.missed += missed
        if code:
            logger.info(
                "Schedule %s fired %d tick(s) on queue %s (last %s)",
                name,
                code,
                self.queue,
                iso_ms(plan.fire[-1]) if plan.fire else None,
                extra=job_fields(queue=self.queue, schedule=name),
            )
        if missed:
            logger.warning(
                "Schedule %s of queue %s missed %s%d tick(s)",
                name,
                self.queue,
                "" if plan.exact else "at least ",
                missed,
            )
        if flags & 2:
            logger.info(
                "Schedule %s of queue %s ended: it fired its limit of %s tick(s)",
                name, self.queue, definition.limit,
            )  # fmt: skip
        return 0.0

    async def _plan(self, definition: ScheduleDefinition, due: int, now: int) -> FirePlan:
        """The plan; a cron catch-up (more than one due tick) is worked out in a thread, so
        the loop (and the workers sharing it) never stalls on it."""
        schedule = definition.schedule
        if schedule.cron is not None:
            after = next_fire(schedule, due)
            if after is not None and after <= now:
                return await asyncio.to_thread(plan_fires, definition, due, now)
        return plan_fires(definition, due, now)

    async def _call_fire(
        self, name: str, fingerprint: str, due: int, plan: FirePlan, last_job: str
    ) -> tuple[int, int, int, int]:
        keys = self.keys
        fire_keys = [
            keys.lease,
            keys.meta,
            keys.schedules,
            keys.schedule(name),
            keys.schedule_ledger(name),
            keys.wait,
            keys.prioritized,
            keys.active,
            keys.delayed,
            keys.events,
            keys.marker,
            *(keys.job(f"{name}:{tick}") for tick in plan.fire),
            *([keys.job(last_job)] if last_job else []),
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
            "" if plan.extra_from is None else plan.extra_from,
            "1" if plan.exact else "0",
            last_job,
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
        code, missed, server_now, flags = (int(v) for v in result)
        return code, missed, server_now, flags

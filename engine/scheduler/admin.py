"""Admin calls on schedules: register (upsert), pause / resume, remove, list, run now."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import orjson

from ..cron import next_fire
from ..errors import ScheduleNotFound
from ..job import Job
from ..options import JobOptions
from ..queue import Queue
from ..store import Store
from .definition import ScheduleDefinition
from .state import iso_ms

logger = logging.getLogger("engine.scheduler")

DEFAULT_IDEMPOTENCY_MS = 24 * 3600 * 1000  # how long a run-now idempotency key is remembered
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """``stored_at_ms``: when the definition now stored was written (Redis time), so a
    declaring instance can tell a stale copy (older) from a newer registration."""

    action: Literal["created", "updated", "unchanged"]
    next_fire_ms: int | None
    stored_at_ms: int = 0


async def server_time_ms(store: Store) -> int:
    sec, usec = await store.client.time()
    return int(sec) * 1000 + int(usec) // 1000


class ScheduleIsDeclared(ValueError):
    """An API change to a schedule declared in a config (engine.toml): change it there."""


async def upsert_schedule(
    store: Store,
    definition: ScheduleDefinition,
    *,
    restore: bool = False,
    api: bool = False,
    actor: str = "",
) -> UpsertResult:
    """Register a schedule; idempotent across instances (see ``upsert_schedule-4.lua``).
    ``restore``: a declaring instance found it missing or outdated (the events say so).
    ``api``: an operator's schedule (source ``api``); raises :class:`ScheduleIsDeclared`
    for one declared in a config, which only pause, resume and run now may touch.
    ``actor``: who asked, recorded as the event's ``by``. A ``limit`` the schedule's fires
    already reached ends it at once (``next_fire_ms`` None)."""
    keys = store.keys(definition.queue)
    now = await server_time_ms(store)
    nxt = next_fire(definition.schedule, now)
    code, stored_next, stored_at = await store.scripts.upsert_schedule(
        [keys.schedules, keys.schedule(definition.name), keys.events, keys.schedules_aside],
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
            "api" if api else "restore" if restore else "register",
            "" if definition.limit is None else definition.limit,
            actor,
        ],
    )
    if int(code) < 0:
        raise ScheduleIsDeclared(
            f"schedule {definition.name!r} of queue {definition.queue!r} is declared in the "
            "config (engine.toml): change it there; pause, resume and run it here"
        )
    action: Literal["created", "updated", "unchanged"] = ("unchanged", "created", "updated")[
        int(code)
    ]
    if action != "unchanged":
        log = logger.warning if restore else logger.info
        log(
            "Schedule %s %s on queue %s (next fire %s)",
            definition.name,
            f"{'missing' if action == 'created' else 'outdated'}: registered again"
            if restore
            else action,
            definition.queue,
            iso_ms(nxt),
        )
    return UpsertResult(action, int(stored_next) if stored_next else None, int(stored_at))


def limit_reached(definition: ScheduleDefinition, fired: str | None) -> bool:
    return definition.limit is not None and int(fired or 0) >= definition.limit


async def set_aside(store: Store, queue: str, name: str, reason: str, by: str) -> None:
    """Mark a schedule whose stored definition this instance cannot read (a zone missing
    from its tzdata, a definition from a newer version): the loop stops trying it, so the
    queue's other schedules fire on time; state, health and an event report it."""
    keys = store.keys(queue)
    async with store.client.pipeline(transaction=True) as pipe:
        pipe.hset(keys.schedule(name), "aside", reason[:300])
        pipe.sadd(keys.schedules_aside, name)
        pipe.xadd(
            keys.events,
            {"event": "schedule", "schedule": name, "action": "set_aside", "reason": reason[:300],
             "by": by},
            maxlen=store.max_events,
            approximate=True,
        )  # fmt: skip
        await pipe.execute()
    logger.error("Schedule %s of queue %s set aside: %s", name, queue, reason)


async def clear_aside(store: Store, queue: str, name: str, by: str) -> None:
    """A schedule set aside is readable again (here): it fires as usual from now on."""
    keys = store.keys(queue)
    async with store.client.pipeline(transaction=True) as pipe:
        pipe.hdel(keys.schedule(name), "aside")
        pipe.srem(keys.schedules_aside, name)
        pipe.xadd(
            keys.events,
            {"event": "schedule", "schedule": name, "action": "readable", "by": by},
            maxlen=store.max_events,
            approximate=True,
        )
        await pipe.execute()
    logger.info("Schedule %s of queue %s is readable again", name, queue)


async def set_schedule_paused(
    store: Store, queue: str, name: str, paused: bool, actor: str = ""
) -> bool:
    """Pause (no fires; ticks while paused are neither fired nor missed) or resume (next
    fire recomputed from now: no catch-up). Returns False if it was already so."""
    keys = store.keys(queue)
    key = keys.schedule(name)
    client = store.client
    raw, is_paused, fired = await client.hmget(key, "def", "paused", "fired")
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
            if limit_reached(definition, fired):
                nxt = None  # it stays ended
            pipe.hdel(key, "paused")
            pipe.hset(key, "next", "" if nxt is None else nxt)
            pipe.zadd(keys.schedules, {name: float("inf") if nxt is None else nxt})
        pipe.xadd(
            keys.events,
            {
                "event": "schedule",
                "schedule": name,
                "action": "paused" if paused else "resumed",
                "by": actor,
            },
            maxlen=store.max_events,
            approximate=True,
        )
        await pipe.execute()
    logger.info("Schedule %s of queue %s %s", name, queue, "paused" if paused else "resumed")
    return True


async def remove_schedule(store: Store, queue: str, name: str, actor: str = "") -> bool:
    """Delete a schedule and its ledger (a schedule created again under the same name starts
    a fresh history). Returns False if it did not exist."""
    keys = store.keys(queue)
    async with store.client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.schedule(name))
        pipe.delete(keys.schedule_ledger(name))
        pipe.zrem(keys.schedules, name)
        pipe.srem(keys.schedules_aside, name)
        removed, _, _, _ = await pipe.execute()
    if removed:
        await store.client.xadd(
            keys.events,
            {"event": "schedule", "schedule": name, "action": "removed", "by": actor},
            maxlen=store.max_events,
            approximate=True,
        )
        logger.info(
            "Schedule %s of queue %s removed%s", name, queue, f" by {actor}" if actor else ""
        )
    return bool(removed)


async def list_schedules(store: Store, queue: str) -> list[str]:
    return list(await store.client.zrange(store.keys(queue).schedules, 0, -1))


async def run_schedule_now(
    queue: Queue,
    name: str,
    actor: str = "",
    *,
    idempotency_key: str | None = None,
    remember_ms: int = DEFAULT_IDEMPOTENCY_MS,
) -> Job:
    """Add an out-of-band run of the schedule's job (generated id); the schedule's next
    fire time does not move.

    With ``idempotency_key`` (e.g. an HTTP ``Idempotency-Key``), the first call with that
    key enqueues the job and records the key for ``remember_ms``, in one script; a retry
    with the same key within that time returns the first job, so a client that got no
    answer (a 503, a timeout) can safely ask again. That path writes the audit event
    (``manual``, ``by`` = ``actor``) in the same script; without a key it is written after
    the add, when an ``actor`` is given.
    """
    if idempotency_key is None:
        key = queue.keys.schedule(name)
        job_name, data, opts = await queue.store.client.hmget(key, "jobName", "data", "opts")
        if job_name is None:
            raise ScheduleNotFound(f"schedule {name!r} not found in queue {queue.name!r}")
        job = await queue.add(
            orjson.loads(data), JobOptions.parse(orjson.loads(opts)), name=job_name
        )
        if actor:  # the audit trail: who asked for this out-of-band run
            await queue.store.client.xadd(
                queue.keys.events,
                {"event": "manual", "schedule": name, "jobId": job.id, "by": actor},
                maxlen=queue.store.max_events,
                approximate=True,
            )
        logger.info(
            "Schedule %s run now as job %s%s", name, job.id, f" by {actor}" if actor else ""
        )
        return job
    validate_idempotency_key(idempotency_key)
    keys = queue.keys
    client = queue.store.client
    # A fresh id from the queue's counter (the one generated ids come from); unused if the
    # key was seen, which only leaves a gap.
    job_id = str(await client.hincrby(keys.meta, "seq", 1))
    code, found, _ = await queue.store.scripts.run_schedule(
        [keys.schedule(name), keys.idempotency(name, idempotency_key), keys.meta, keys.wait,
         keys.prioritized, keys.events, keys.marker, keys.job(job_id)],
        [job_id, remember_ms, queue.store.max_events, name, actor],
    )  # fmt: skip
    if int(code) < 0:
        raise ScheduleNotFound(f"schedule {name!r} not found in queue {queue.name!r}")
    first_job = await queue.get_job(found)
    if first_job is None:  # the first job ran and was removed since
        raise ScheduleNotFound(f"job {found} of this idempotency key no longer exists")
    logger.info(
        "Schedule %s run now as job %s%s%s", name, found, f" by {actor}" if actor else "",
        "" if int(code) else " (idempotency key seen before: the first job)",
    )  # fmt: skip
    return first_job


def validate_idempotency_key(key: str) -> str:
    """1-255 visible ASCII characters (the ``Idempotency-Key`` header convention)."""
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY
        or not all(33 <= ord(ch) <= 126 for ch in key)
    ):
        raise ValueError(
            f"idempotency key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )
    return key

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
            iso_ms(nxt),
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

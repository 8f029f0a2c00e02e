"""The seed's schedulers and their functions (``initSerpramScheduler`` ... in Python form).

``init_all_schedulers(manager)`` registers every enabled schedule of the config (default:
``engine.toml``), starts one scheduler per queue and a worker per processor, and makes
``manager`` the default for the other functions, which also take ``manager=`` explicitly.
SERPRAM and AYT are built in with the seed's exact options, so they work without a config
file; a config entry of the same name replaces them.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from .config import EngineConfig, ScheduleConfig, load_config
from .cron import parse_schedule
from .errors import ScheduleNotFound
from .job import Job, JobState
from .lock import LeaseConfig
from .manager import QueueManager
from .options import JobOptions, Repeat
from .processors import ProcessorContext, bind
from .queue import QueueStats
from .scheduler import (
    DEFAULT_MISFIRE_GRACE_MS,
    ScheduleDefinition,
    ScheduleState,
    UpsertResult,
    define_schedule,
    get_schedule_state,
    list_schedules,
    run_schedule_now,
    set_schedule_paused,
    upsert_schedule,
)
from .scheduler import remove_schedule as remove
from .scheduler.admin import ScheduleIsDeclared

SERPRAM = ScheduleConfig(
    ScheduleDefinition(
        name="serpram",
        queue="serpram-sync",
        schedule=parse_schedule(cron="*/5 * * * *"),
        options=JobOptions.parse(
            {
                "attempts": 3,
                "backoff": {"type": "exponential", "delay": 5000},
                "removeOnComplete": 50,
                "removeOnFail": 100,
            }
        ),
        overlap="skip",
    ),
    processor="engine.processors:serpram_sync",
)
AYT = ScheduleConfig(
    ScheduleDefinition(
        name="ayt",
        queue="ayt-sync",
        schedule=parse_schedule(cron="* * * * *"),
        options=JobOptions.parse(
            {
                "attempts": 3,
                "backoff": {"type": "exponential", "delay": 3000},
                "removeOnComplete": 100,
                "removeOnFail": 200,
            }
        ),
        overlap="skip",
    ),
    processor="engine.processors:ayt_sync",
)
BUILT_IN: Mapping[str, ScheduleConfig] = {"serpram": SERPRAM, "ayt": AYT}

_default: QueueManager | None = None
_config: EngineConfig | None = None
# Queues that already run a processor worker, per manager: init twice, one worker.
_workers: weakref.WeakKeyDictionary[QueueManager, set[str]] = weakref.WeakKeyDictionary()


def set_default_manager(manager: QueueManager | None) -> None:
    global _default
    _default = manager


def _manager(manager: QueueManager | None) -> QueueManager:
    found = manager or _default
    if found is None:
        raise RuntimeError("no manager: call init_all_schedulers(manager) or pass manager=")
    return found


def _schedule_config(name: str, config: EngineConfig | None) -> ScheduleConfig:
    cfg = config or _config or load_config()
    found = cfg.schedules.get(name) or BUILT_IN.get(name)
    if found is None:
        raise ScheduleNotFound(f"schedule {name!r} is not declared")
    return found


async def init_scheduler(
    name: str,
    manager: QueueManager | None = None,
    config: EngineConfig | None = None,
    *,
    worker: bool = True,
    **worker_options: Any,
) -> UpsertResult:
    """Register schedule ``name`` (idempotent), start its queue's scheduler and, when
    ``worker`` and it has a processor, a worker running it."""
    m = _manager(manager)
    cfg = config or _config or load_config()
    sc = _schedule_config(name, cfg)
    d = sc.definition
    m.create_queue(d.queue, d.options)
    result = await upsert_schedule(m.store, d)
    # Kept registered from now on: a schedule lost with Redis's data comes back.
    m.start_scheduler(d.queue, cfg.lease).declare(d, result.stored_at_ms)
    processor = sc.load_processor()
    running = _workers.setdefault(m, set())
    if worker and processor is not None and d.queue not in running:
        running.add(d.queue)
        handler = bind(processor, ProcessorContext(m, d.queue, d.name))
        await m.process(d.queue, handler, concurrency=sc.concurrency, **worker_options)
    return result


async def init_all_schedulers(
    manager: QueueManager | None = None,
    config: EngineConfig | None = None,
    *,
    worker: bool = True,
) -> dict[str, UpsertResult]:
    """Register every enabled declared schedule (built-ins first, then the config's)."""
    global _config
    m = _manager(manager)
    set_default_manager(m)
    cfg = config or load_config()
    _config = cfg
    names = dict.fromkeys([*BUILT_IN, *cfg.schedules])
    results: dict[str, UpsertResult] = {}
    for name in names:
        if _schedule_config(name, cfg).enabled:
            results[name] = await init_scheduler(name, m, cfg, worker=worker)
    return results


async def run_now(
    name: str,
    manager: QueueManager | None = None,
    actor: str = "",
    idempotency_key: str | None = None,
) -> Job:
    """An out-of-band run of schedule ``name``; its next fire time does not move. With
    ``idempotency_key``, a retry with the same key returns the first job."""
    m = _manager(manager)
    d = _schedule_config(name, None).definition
    queue = m.create_queue(d.queue)
    try:
        return await run_schedule_now(queue, name, actor, idempotency_key=idempotency_key)
    except ScheduleNotFound:
        # Declared here but not (or no longer) in Redis: the service is still starting, or
        # Redis lost its data. Registering it is idempotent and never moves the next fire
        # of a schedule another instance registered meanwhile.
        await upsert_schedule(m.store, d)
        return await run_schedule_now(queue, name, actor, idempotency_key=idempotency_key)


async def get_stats(name: str, manager: QueueManager | None = None) -> QueueStats:
    m = _manager(manager)
    return await m.create_queue(_schedule_config(name, None).queue).get_stats()


async def get_state(name: str, manager: QueueManager | None = None) -> ScheduleState:
    m = _manager(manager)
    return await get_schedule_state(m.store, _schedule_config(name, None).queue, name)


async def pause(name: str, manager: QueueManager | None = None, actor: str = "") -> None:
    """Stop firing the schedule and pause its queue (for every instance)."""
    m = _manager(manager)
    queue = _schedule_config(name, None).queue
    await set_schedule_paused(m.store, queue, name, True)
    await m.create_queue(queue).pause(actor)


async def resume(name: str, manager: QueueManager | None = None, actor: str = "") -> None:
    """Resume the queue and the schedule (next fire from now: no catch-up of the pause)."""
    m = _manager(manager)
    queue = _schedule_config(name, None).queue
    await m.create_queue(queue).resume(actor)
    await set_schedule_paused(m.store, queue, name, False)
    scheduler = m.schedulers.get(queue)
    if scheduler is not None:
        scheduler.wake()


# The seed's names.


async def init_serpram_scheduler(manager: QueueManager | None = None) -> UpsertResult:
    return await init_scheduler("serpram", manager)


async def run_serpram_sync_now(manager: QueueManager | None = None) -> Job:
    return await run_now("serpram", manager)


async def get_serpram_stats(manager: QueueManager | None = None) -> QueueStats:
    return await get_stats("serpram", manager)


async def pause_serpram_scheduler(manager: QueueManager | None = None) -> None:
    await pause("serpram", manager)


async def resume_serpram_scheduler(manager: QueueManager | None = None) -> None:
    await resume("serpram", manager)


async def init_ayt_scheduler(manager: QueueManager | None = None) -> UpsertResult:
    return await init_scheduler("ayt", manager)


async def run_ayt_sync_now(manager: QueueManager | None = None) -> Job:
    return await run_now("ayt", manager)


async def get_ayt_stats(manager: QueueManager | None = None) -> QueueStats:
    return await get_stats("ayt", manager)


async def pause_ayt_scheduler(manager: QueueManager | None = None) -> None:
    await pause("ayt", manager)


async def resume_ayt_scheduler(manager: QueueManager | None = None) -> None:
    await resume("ayt", manager)


__all__ = [
    "AYT",
    "SERPRAM",
    "ScheduleIsDeclared",
    "add_repeatable",
    "get_ayt_stats",
    "get_serpram_stats",
    "get_state",
    "get_stats",
    "init_all_schedulers",
    "init_ayt_scheduler",
    "init_scheduler",
    "init_serpram_scheduler",
    "list_all",
    "pause",
    "pause_ayt_scheduler",
    "pause_schedule",
    "pause_serpram_scheduler",
    "remove_schedule",
    "resume",
    "resume_ayt_scheduler",
    "resume_schedule",
    "resume_serpram_scheduler",
    "run_ayt_sync_now",
    "run_now",
    "run_serpram_sync_now",
    "set_default_manager",
    "upsert",
    "upsert_definition",
]


# Schedules at run time (#14): the same objects as the declared ones, with source "api".
# A declared schedule (engine.toml) may be paused, resumed and run here, never redefined or
# removed: its config is its source, so a restart never undoes an operator's change.


async def upsert(
    name: str,
    *,
    queue: str,
    cron: str | None = None,
    every_ms: int | None = None,
    timezone: str = "UTC",
    job_name: str = "",
    data: Any = None,
    options: Mapping[str, Any] | JobOptions | None = None,
    misfire: str = "once",
    misfire_grace_ms: int = DEFAULT_MISFIRE_GRACE_MS,
    overlap: str = "allow",
    start_ms: int | None = None,
    end_ms: int | None = None,
    limit: int | None = None,
    manager: QueueManager | None = None,
    actor: str = "",
) -> UpsertResult:
    """Create or change an operator's schedule (idempotent: N instances calling it with the
    same definition make one schedule, and it fires once per tick, fenced by the lease).
    ``limit``: end after that many fires in all. ``ValueError`` naming the field;
    ``ScheduleIsDeclared`` for a declared one."""
    definition = define_schedule(
        name, queue, cron=cron, every_ms=every_ms, tz=timezone, start_ms=start_ms,
        end_ms=end_ms, data=data, opts=options, misfire=misfire,
        misfire_grace_ms=misfire_grace_ms, overlap=overlap, job_name=job_name, limit=limit,
    )  # fmt: skip
    return await upsert_definition(definition, manager=manager, actor=actor)


async def upsert_definition(
    definition: ScheduleDefinition, *, manager: QueueManager | None = None, actor: str = ""
) -> UpsertResult:
    """:func:`upsert` of a definition already built (the REST API validates its body into
    one)."""
    m = _manager(manager)
    m.create_queue(definition.queue)
    result = await upsert_schedule(m.store, definition, api=True, actor=actor)
    _lease_loop(m, definition.queue)
    return result


def _lease_loop(m: QueueManager, queue: str) -> None:
    """This instance contends for the queue's lease too (and re-reads its schedules now)."""
    lease = (_config.lease if _config is not None else None) or LeaseConfig()
    m.start_scheduler(queue, lease).wake()


async def remove_schedule(name: str, *, queue: str, manager: QueueManager | None = None,
                          actor: str = "") -> bool:  # fmt: skip
    """Delete an operator's schedule and its ledger; False if there was none."""
    m = _manager(manager)
    source = await m.client.hget(m.store.keys(queue).schedule(name), "source")
    if source is not None and source != "api":
        raise ScheduleIsDeclared(f"schedule {name!r} is declared in the config: remove it there")
    return await remove(m.store, queue, name, actor)


async def pause_schedule(name: str, *, queue: str, manager: QueueManager | None = None,
                         actor: str = "") -> bool:  # fmt: skip
    """Stop firing this schedule alone (its queue keeps running); False if already paused."""
    m = _manager(manager)
    return await set_schedule_paused(m.store, queue, name, True, actor)


async def resume_schedule(name: str, *, queue: str, manager: QueueManager | None = None,
                          actor: str = "") -> bool:  # fmt: skip
    """Fire it again from the next tick after now (no catch-up of the pause)."""
    m = _manager(manager)
    changed = await set_schedule_paused(m.store, queue, name, False, actor)
    scheduler = m.schedulers.get(queue)
    if scheduler is not None:
        scheduler.wake()
    return changed


async def list_all(manager: QueueManager | None = None) -> list[ScheduleState]:
    """Every schedule of the manager's queues, declared and API ones."""
    m = _manager(manager)
    out: list[ScheduleState] = []
    for queue in sorted(m.queues):
        for name in await list_schedules(m.store, queue):
            try:
                out.append(await get_schedule_state(m.store, queue, name))
            except ScheduleNotFound:
                continue  # removed meanwhile
    return out


async def add_repeatable(
    manager: QueueManager,
    queue: str,
    data: Any,
    opts: Mapping[str, Any],
    name: str | None = None,
) -> Job:
    """``add_job(queue, data, {"jobId": ..., "repeat": {...}})``: the schedule ``jobId`` of
    ``queue`` (the remaining options are its job's), upserted; returns the job its next fire
    will enqueue."""
    rest = {k: v for k, v in opts.items() if k not in ("repeat", "jobId", "job_id")}
    schedule_name = opts.get("jobId", opts.get("job_id"))
    if not isinstance(schedule_name, str):
        raise ValueError("jobId is required with repeat: it names the schedule")
    repeat = Repeat.parse(opts["repeat"])
    manager.get_queue(queue)  # registered queues only, as add_job
    result = await upsert(
        schedule_name, queue=queue, cron=repeat.cron, every_ms=repeat.every_ms,
        timezone=repeat.tz, start_ms=repeat.start_ms, end_ms=repeat.end_ms, data=data,
        options=rest, job_name=name or "", limit=repeat.limit, manager=manager,
    )  # fmt: skip
    nxt = result.next_fire_ms or 0
    return Job(
        id=f"{schedule_name}:{nxt}", queue=queue, name=name or schedule_name, data=data,
        opts=JobOptions.parse(rest), timestamp=nxt, state=JobState.DELAYED,
    )  # fmt: skip

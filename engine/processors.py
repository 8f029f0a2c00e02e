"""Demo processors for the declared schedules: idempotent syncs and the daily clean-up.

A processor is ``async def fn(job)`` or ``async def fn(job, ctx)``; with two parameters
it receives a :class:`ProcessorContext` (the manager, queue and schedule name). The sync
demos stand in for the real fetch, which is the user's to plug in: each keeps a watermark
in Redis (``keys.watermark(<schedule>)``) and only ever moves it forward, so running a
tick twice (at-least-once delivery) reads the same window and changes nothing.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .job import Job

if TYPE_CHECKING:
    from .manager import QueueManager

logger = logging.getLogger("engine.processors")

DAY_MS = 24 * 3600 * 1000
COMPLETED_GRACE_MS = DAY_MS
FAILED_GRACE_MS = 7 * DAY_MS

# Move the watermark forward only (a late duplicate run never moves it back).
_ADVANCE = """
local cur = tonumber(redis.call("GET", KEYS[1]) or "-1")
if tonumber(ARGV[1]) > cur then
  redis.call("SET", KEYS[1], ARGV[1])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class ProcessorContext:
    manager: QueueManager
    queue: str
    schedule: str


def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def tick_of(job: Job) -> int:
    """The scheduled tick of a fired job (``<schedule>:<tick ms>``), else its creation time."""
    head, _, tail = job.id.rpartition(":")
    return int(tail) if head and tail.isdigit() else job.timestamp


def bind(fn: Callable[..., Any], ctx: ProcessorContext) -> Callable[[Job], Awaitable[Any]]:
    """Adapt a one- or two-parameter processor to the worker's ``handler(job)``."""
    wants_ctx = len(inspect.signature(fn).parameters) >= 2

    async def handler(job: Job) -> Any:
        result = fn(job, ctx) if wants_ctx else fn(job)
        if inspect.isawaitable(result):
            result = await result
        return result

    return handler


def make_sync_processor(label: str) -> Callable[[Job, ProcessorContext], Awaitable[Any]]:
    """An idempotent sync demo that logs ``<label> - reading since: <timestamp>``."""

    async def sync(job: Job, ctx: ProcessorContext) -> dict[str, Any]:
        client = ctx.manager.client
        key = ctx.manager.store.keys(ctx.queue).watermark(ctx.schedule)
        until = tick_of(job)
        stored = await client.get(key)
        since = int(stored) if stored is not None else until
        logger.info("%s - reading since: %s", label, iso(since))
        # The real fetch of (since, until] goes here.
        advanced = bool(await client.eval(_ADVANCE, 1, key, until))
        return {"since": iso(since), "until": iso(until), "advanced": advanced}

    sync.__name__ = f"{label.lower()}_sync"
    return sync


serpram_sync = make_sync_processor("SERPRAM")
ayt_sync = make_sync_processor("AYT")
esinfa_sync = make_sync_processor("ESINFA")
sercoamb_sync = make_sync_processor("SERCOAMB")


async def clean_all_queues(job: Job, ctx: ProcessorContext) -> dict[str, Any]:
    """Daily clean-up (the seed's best practice): completed jobs older than 24 h and failed
    jobs older than 7 days on every queue of the manager. ``job.data`` may override
    ``completed_grace_ms`` / ``failed_grace_ms``."""
    data = job.data if isinstance(job.data, dict) else {}
    completed_grace = int(data.get("completed_grace_ms", COMPLETED_GRACE_MS))
    failed_grace = int(data.get("failed_grace_ms", FAILED_GRACE_MS))
    removed: dict[str, dict[str, int]] = {}
    for name in sorted(ctx.manager.queues):
        removed[name] = {
            "completed": await ctx.manager.clean_completed_jobs(name, completed_grace, "cleanup"),
            "failed": await ctx.manager.clean_failed_jobs(name, failed_grace, "cleanup"),
        }
    logger.info("Clean-up removed %s", removed)
    return removed


__all__ = [
    "ProcessorContext",
    "ayt_sync",
    "bind",
    "clean_all_queues",
    "esinfa_sync",
    "make_sync_processor",
    "sercoamb_sync",
    "serpram_sync",
    "tick_of",
]

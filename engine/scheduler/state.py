"""What an operator wants to know about one schedule, read from Redis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ..errors import ScheduleNotFound
from ..lock import current_leader
from ..store import Store
from .definition import STATE_WINDOW


def iso_ms(ms: int | None) -> str | None:
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
    missed_at_least: bool = False  # missed_count is a lower bound (a long cron outage)
    set_aside: str | None = None  # why it cannot be read where it was to fire
    limit: int | None = None  # fires in all, then it ends (Bull's repeat.limit)
    # "declared" (a config's: redefined only there) or "api" (an operator's)
    source: str = "declared"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queue": self.queue,
            "cron": self.cron,
            "everyMs": self.every_ms,
            "tz": self.tz,
            "paused": self.paused,
            "nextFire": iso_ms(self.next_fire_ms),
            "nextFireMs": self.next_fire_ms,
            "lastFire": iso_ms(self.last_fire_ms),
            "lastFireMs": self.last_fire_ms,
            "lastJobId": self.last_job_id,
            "lastSuccess": iso_ms(self.last_success_ms),
            "lastSuccessMs": self.last_success_ms,
            "firedCount": self.fired_count,
            "missedCount": self.missed_count,
            "consecutiveFailures": self.consecutive_failures,
            "leader": self.leader,
            "leaderEpoch": self.leader_epoch,
            "misfire": self.misfire,
            "overlap": self.overlap,
            "missedAtLeast": self.missed_at_least,
            "setAside": self.set_aside,
            "limit": self.limit,
            "source": self.source,
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
    definition, sched = _readable(h.get("def"))
    aside = h.get("aside")
    if definition is None and aside is None:
        aside = "stored definition is not readable JSON"
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
        misfire=str(definition.get("misfire", "once")) if definition else "?",
        overlap=str(definition.get("overlap", "allow")) if definition else "?",
        missed_at_least="missedAtLeast" in h,
        set_aside=aside,
        limit=_opt_int(h.get("limit")),
        source=h.get("source") or "declared",
    )


def _readable(raw: str | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The stored definition and its schedule part, as far as they can be read (a schedule
    written by a newer version still gets a state)."""
    try:
        definition = orjson.loads(raw or "")
    except orjson.JSONDecodeError:
        return None, {}
    if not isinstance(definition, dict):
        return None, {}
    sched = definition.get("schedule")
    return definition, sched if isinstance(sched, dict) else {}

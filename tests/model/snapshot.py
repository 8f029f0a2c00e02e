"""One atomic read of a queue's whole state, for the model's invariants: every structure,
every job hash, the events since the last read and Redis's clock, in ONE script call (so
no script of the engine runs in between). The model runs on a private standalone server,
so the script may read keys it does not declare."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.keys import QueueKeys

_SNAPSHOT = """
local base, cursor = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local jobs = {}
local prefix = base .. 'job:'
for _, key in ipairs(redis.call('KEYS', prefix .. '*')) do
  if string.sub(key, -5) ~= ':logs' then
    jobs[#jobs + 1] = string.sub(key, #prefix + 1)
    jobs[#jobs + 1] = redis.call('HGETALL', key)
  end
end
return {
  now,
  redis.call('LRANGE', base .. 'wait', 0, -1),
  redis.call('ZRANGE', base .. 'prioritized', 0, -1),
  redis.call('ZRANGE', base .. 'active', 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', base .. 'delayed', 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', base .. 'completed', 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', base .. 'failed', 0, -1, 'WITHSCORES'),
  redis.call('HEXISTS', base .. 'meta', 'paused'),
  jobs,
  redis.call('XRANGE', base .. 'events', '(' .. cursor, '+'),
}
"""

STRUCTURES = ("wait", "prioritized", "active", "delayed", "completed", "failed")


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    ms: int
    name: str
    fields: dict[str, str]

    @property
    def job(self) -> str | None:
        return self.fields.get("jobId")


@dataclass(slots=True)
class Snapshot:
    now_ms: int
    members: dict[str, list[str]]  # structure -> ids (the wait list keeps duplicates)
    scores: dict[str, dict[str, float]]  # active / delayed / completed / failed
    paused: bool
    jobs: dict[str, dict[str, str]]
    events: list[Event] = field(default_factory=list)

    def states(self, job_id: str) -> list[str]:
        return [s for s in STRUCTURES for m in self.members[s] if m == job_id]

    def data(self, job_id: str) -> Any:
        raw = self.jobs.get(job_id, {}).get("data")
        try:
            return orjson.loads(raw) if raw is not None else None
        except orjson.JSONDecodeError:
            return None

    def opts(self, job_id: str) -> dict[str, Any]:
        raw = self.jobs.get(job_id, {}).get("opts")
        try:
            value = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


def _pairs(flat: list[Any]) -> dict[str, float]:
    return {str(flat[i]): float(flat[i + 1]) for i in range(0, len(flat), 2)}


async def take(client: Any, keys: QueueKeys, cursor: str) -> Snapshot:
    """The queue's state now, with the events after ``cursor`` (a stream id, "0" first)."""
    raw = await client.eval(_SNAPSHOT, 0, keys.base, cursor)
    now, wait, prioritized, active, delayed, completed, failed, paused, jobs, events = raw
    scored = {
        "active": _pairs(active),
        "delayed": _pairs(delayed),
        "completed": _pairs(completed),
        "failed": _pairs(failed),
    }
    members = {"wait": [str(x) for x in wait], "prioritized": [str(x) for x in prioritized]}
    members.update({name: list(s) for name, s in scored.items()})
    hashes = {}
    for i in range(0, len(jobs), 2):
        flat = jobs[i + 1]
        hashes[str(jobs[i])] = {str(flat[j]): str(flat[j + 1]) for j in range(0, len(flat), 2)}
    parsed = []
    for eid, flat in events:
        values = {str(flat[j]): str(flat[j + 1]) for j in range(0, len(flat), 2)}
        parsed.append(Event(str(eid), int(str(eid).split("-")[0]), values.get("event", ""), values))
    return Snapshot(int(now), members, scored, bool(int(paused)), hashes, parsed)

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
local jobPrefix, logsSuffix, cursor = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local jobs = {}
for _, key in ipairs(redis.call('KEYS', jobPrefix .. '*')) do
  local id = string.sub(key, #jobPrefix + 1)
  local isLogs = logsSuffix ~= '' and string.sub(key, -#logsSuffix) == logsSuffix
  if not isLogs and redis.call('TYPE', key)['ok'] == 'hash' then
    jobs[#jobs + 1] = id
    jobs[#jobs + 1] = redis.call('HGETALL', key)
  end
end
return {
  now,
  redis.call('LRANGE', KEYS[1], 0, -1),
  redis.call('ZRANGE', KEYS[2], 0, -1),
  redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', KEYS[6], 0, -1, 'WITHSCORES'),
  redis.call('HEXISTS', KEYS[7], 'paused'),
  jobs,
  redis.call('XRANGE', KEYS[8], '(' .. cursor, '+'),
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
    # Key names from QueueKeys (engine/keys.py), so a change of layout follows here.
    probe = "probe-id"
    logs_suffix = ""
    if keys.logs(probe).startswith(keys.job(probe)):
        logs_suffix = keys.logs(probe)[len(keys.job(probe)) :]
    names = [keys.wait, keys.prioritized, keys.active, keys.delayed, keys.completed]
    names += [keys.failed, keys.meta, keys.events]
    raw = await client.eval(_SNAPSHOT, len(names), *names, keys.job_prefix, logs_suffix, cursor)
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

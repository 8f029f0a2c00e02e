"""The schedules one instance declares (``engine.toml``, built-ins) for one queue, kept
registered: a schedule lost with Redis's data (a restart without persistence, FLUSHALL, a
failover to an empty or stale replica) is registered again within one lease TTL.

The rule, the same on every instance so that they never fight:

- missing: register it again (idempotent: N instances make one schedule, next fire from
  now, no catch-up of what was lost);
- stored with another fingerprint, written *before* this instance's own registration (a
  stale copy, e.g. a replica that missed the last deploy's registration): register ours
  again;
- stored with another fingerprint written *after* it: a newer registration (a newer deploy
  or an operator's change) wins; leave it.

A schedule that exists is never touched: its next fire does not move.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..store import Store
from .admin import upsert_schedule
from .definition import ScheduleDefinition


@dataclass(slots=True)
class _Declared:
    definition: ScheduleDefinition
    fingerprint: str
    stored_at_ms: int  # when the definition this instance registered (or found) was written


class DeclaredSchedules:
    def __init__(self, store: Store, queue: str) -> None:
        self.store = store
        self.keys = store.keys(queue)
        self._by_name: dict[str, _Declared] = {}
        self.restored = 0  # registrations made again by this instance

    def add(self, definition: ScheduleDefinition, stored_at_ms: int) -> None:
        self._by_name[definition.name] = _Declared(
            definition, definition.fingerprint(), stored_at_ms
        )

    def stored_at(self, name: str) -> int:
        """When the registration of ``name`` this instance made or found was written: the
        same on every instance declaring it (an alert keys its incident by it)."""
        return self._by_name[name].stored_at_ms

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def __bool__(self) -> bool:
        return bool(self._by_name)

    async def check(self) -> list[str]:
        """One round trip to read them all; re-register what is missing or stale. Returns
        the names this call registered again."""
        declared = list(self._by_name.values())
        if not declared:
            return []
        async with self.store.client.pipeline(transaction=False) as pipe:
            for d in declared:
                pipe.hmget(self.keys.schedule(d.definition.name), "fp", "updated")
            stored = await pipe.execute()
        again: list[str] = []
        for d, (fp, updated) in zip(declared, stored, strict=True):
            if fp == d.fingerprint:
                continue
            if fp is not None and int(updated or 0) > d.stored_at_ms:
                continue  # a newer registration: not ours to undo
            result = await upsert_schedule(self.store, d.definition, restore=True)
            d.stored_at_ms = result.stored_at_ms
            if result.action != "unchanged":
                self.restored += 1
                again.append(d.definition.name)
        return again

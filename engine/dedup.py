"""Deduplication of adds: BullMQ's ``deduplication: {id, ttl, extend, replace}`` option.

An add with a deduplication id opens a window, the key ``dedup:<id>`` holding the job's
id (``QueueKeys.dedup``). While the window is open, another add with that id adds nothing
and returns the job that opened it (``Job.deduplicated`` is then true, and a
``deduplicated`` event names both ids). The window lasts:

- ``ttl`` ms (BullMQ's throttle mode), whatever happens to the job meanwhile;
- without ``ttl``, until the job finishes (BullMQ's simple mode): the finishing scripts
  delete the key (lua/include/dedup.lua), and an add that finds the key pointing at a job
  that is finished or gone by any other way (cancel, stalled too often, removal) opens a
  new window.

``extend`` restarts the ttl at every deduplicated add; ``replace`` gives the pending job
the data of the later add and, if it is delayed, the later add's delay counted from now
(with both, BullMQ's debounce mode). A job that is running or finished is never touched.

All of it happens inside the ``add_job`` script (engine/lua/add_job-7+.lua), which reads
before its first write and records its reply for resends like every add.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .keys import QueueKeys, validate_dedup_id

# What add_job answers per job: the job was created, its fixed id existed already, or the
# add was deduplicated (and the pending job's data replaced).
EXISTED, CREATED, DEDUPLICATED, REPLACED = 0, 1, 2, 3
MAX_TTL_MS = 10 * 365 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Deduplication:
    """The ``deduplication`` option of one job (see the module docstring)."""

    id: str
    ttl: int | None = None
    extend: bool = False
    replace: bool = False

    @classmethod
    def parse(cls, value: Any) -> Deduplication:
        if isinstance(value, Deduplication):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"deduplication must be an object {{id, ttl?}}, got {value!r}")
        unknown = set(value) - {"id", "ttl", "extend", "replace"}
        if unknown:
            raise ValueError(
                f"deduplication has unknown field(s): {', '.join(sorted(map(str, unknown)))}"
            )
        if "id" not in value:
            raise ValueError("deduplication.id is required")
        dedup_id = validate_dedup_id(value["id"])
        ttl = value.get("ttl")
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL_MS:
                raise ValueError(
                    f"deduplication.ttl must be an integer number of ms between 0 and "
                    f"{MAX_TTL_MS}, got {ttl!r}"
                )
            ttl = ttl or None  # BullMQ reads 0 as no ttl
        flags = {}
        for name in ("extend", "replace"):
            flag = value.get(name, False)
            if not isinstance(flag, bool):
                raise ValueError(f"deduplication.{name} must be true or false, got {flag!r}")
            if flag and ttl is None:
                raise ValueError(f"deduplication.{name} needs deduplication.ttl")
            flags[name] = flag
        return cls(dedup_id, ttl, flags["extend"], flags["replace"])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.ttl is not None:
            out["ttl"] = self.ttl
        if self.extend:
            out["extend"] = True
        if self.replace:
            out["replace"] = True
        return out


def call_tail(
    keys: QueueKeys, entries: Sequence[tuple[int, Deduplication]]
) -> tuple[list[str], list[str | int]]:
    """The keys and args add_job takes after its jobs for ``entries`` (1-based index of the
    job in the call, its option): the sets a pending job is checked against, then one
    dedup key per entry; the job prefix, then 5 values per entry."""
    tail_keys = [keys.active, keys.completed, keys.failed]
    tail_args: list[str | int] = [keys.job_prefix]
    for index, d in entries:
        tail_keys.append(keys.dedup(d.id))
        tail_args += [index, d.id, d.ttl or 0, int(d.extend), int(d.replace)]
    return tail_keys, tail_args

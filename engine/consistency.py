"""A consistency check of one queue that operators can run (CLI, admin API, Python).

Every job hash must sit in exactly one of ``wait``, ``prioritized``, ``active``,
``delayed``, ``completed``, ``failed``, and every id in those structures must have a
hash. The check reads the structures and SCANs the job hashes in bounded chunks (never one
long command), so it runs against a live queue; a job that moves while it reads can look
wrong, so each suspect is verified once more by one atomic script (``locate_job``) before
it is reported. Cost: O(jobs) commands in chunks and O(jobs) memory in the process; the
verification of a suspect also scans the ``wait`` list, so at most ``MAX_VERIFIED``
suspects are verified and any beyond are counted as ``unverified``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .keys import QueueKeys

CHUNK = 10_000
MAX_VERIFIED = 1000
MAX_SAMPLE = 100
_ZSETS = ("prioritized", "active", "delayed", "completed", "failed")
# The state each structure holds (`wait` and `prioritized` are both "waiting").
_STATE_OF = {"wait": "waiting", "prioritized": "waiting", **{z: z for z in _ZSETS[1:]}}


@dataclass(slots=True)
class Finding:
    """How many jobs have one kind of problem, and a bounded sample of their ids."""

    count: int = 0
    sample: list[str] = field(default_factory=list)

    def add(self, job_id: str, limit: int) -> None:
        self.count += 1
        if len(self.sample) < limit:
            self.sample.append(job_id)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sample": self.sample}


@dataclass(slots=True)
class ConsistencyReport:
    """The outcome of :func:`check_consistency`. ``states`` counts the consistent jobs per
    state as read (a live queue moves meanwhile); the findings are verified."""

    queue: str
    jobs: int = 0
    states: dict[str, int] = field(default_factory=dict)
    orphaned: Finding = field(default_factory=Finding)
    multiple: Finding = field(default_factory=Finding)
    missing_hash: Finding = field(default_factory=Finding)
    unverified: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.orphaned.count or self.multiple.count or self.missing_hash.count or self.unverified
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "ok": self.ok,
            "jobs": self.jobs,
            "states": self.states,
            "orphaned": self.orphaned.to_dict(),
            "multiple": self.multiple.to_dict(),
            "missingHash": self.missing_hash.to_dict(),
            "unverified": self.unverified,
        }


async def _places(client: Any, keys: QueueKeys) -> dict[str, list[str]]:
    """Every id in a structure, with the structures holding it (``wait`` once per entry)."""
    where: dict[str, list[str]] = {}
    start = 0
    while True:
        chunk = await client.lrange(keys.wait, start, start + CHUNK - 1)
        for job_id in chunk:
            where.setdefault(job_id, []).append("wait")
        if len(chunk) < CHUNK:
            break
        start += CHUNK
    for name in _ZSETS:
        seen: set[str] = set()
        async for job_id, _ in client.zscan_iter(getattr(keys, name), count=CHUNK):
            if job_id not in seen:  # ZSCAN may return a member twice
                seen.add(job_id)
                where.setdefault(job_id, []).append(name)
    return where


async def _hashed(client: Any, keys: QueueKeys) -> set[str]:
    prefix = keys.job_prefix
    ids: set[str] = set()
    async for key in client.scan_iter(match=f"{prefix}*", count=CHUNK):
        ids.add(key[len(prefix) :])
    return ids


async def _locate(scripts: Any, keys: QueueKeys, job_id: str) -> tuple[bool, list[str]]:
    k = keys
    reply = await scripts.locate_job(
        [k.job(job_id), k.wait, k.prioritized, k.active, k.delayed, k.completed, k.failed],
        [job_id],
    )
    return bool(int(reply[0])), [str(p) for p in reply[1:]]


async def check_consistency(
    client: Any, scripts: Any, keys: QueueKeys, queue: str, sample: int = 20
) -> ConsistencyReport:
    """Check one queue; ``sample`` ids at most per finding (capped at ``MAX_SAMPLE``)."""
    limit = max(0, min(sample, MAX_SAMPLE))
    where = await _places(client, keys)
    hashed = await _hashed(client, keys)
    report = ConsistencyReport(queue=queue, jobs=len(hashed))
    states: Counter[str] = Counter()
    suspects: list[str] = []
    for job_id in sorted(hashed | where.keys()):
        places = where.get(job_id, [])
        if job_id in hashed and len(places) == 1:
            states[_STATE_OF[places[0]]] += 1
        else:
            suspects.append(job_id)
    for i, job_id in enumerate(suspects):
        if i >= MAX_VERIFIED:
            report.unverified = len(suspects) - MAX_VERIFIED
            break
        exists, places = await _locate(scripts, keys, job_id)
        if exists and not places:
            report.orphaned.add(job_id, limit)
        elif exists and len(places) > 1:
            report.multiple.add(job_id, limit)
        elif places and not exists:
            report.missing_hash.add(job_id, limit)
        elif exists:  # it had moved while the first pass read: consistent now
            states[_STATE_OF[places[0]]] += 1
    report.states = dict(sorted(states.items()))
    return report

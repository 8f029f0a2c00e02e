"""The read half of a queue: counts, listings, one job and its state, events.

No read uses MULTI (Redis refuses it over ``maxmemory``, when an operator most needs to
look): a read that must be atomic is one read-only script (``read_job``,
``list_waiting``), the others are single commands or plain pipelines of counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .consistency import ConsistencyReport, check_consistency
from .job import LISTED_STATES, Job, JobState
from .keys import QueueKeys
from .store import Store

MAX_PAGE = 1000
# Waiting jobs are counted in one command (the list and the zset of one queue, same slot)
# so that _queue_stats stays at one command per field: callers slice its replies.
_COUNT_WAITING = "return redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])"


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Job counts of one queue, with exactly the seed's fields."""

    name: str
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    paused: int
    total: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "waiting": self.waiting,
            "active": self.active,
            "completed": self.completed,
            "failed": self.failed,
            "delayed": self.delayed,
            "paused": self.paused,
            "total": self.total,
        }


def listed_state(name: str | JobState) -> JobState:
    """The state ``name`` names, if a queue can list and count it."""
    if name in LISTED_STATES:
        return JobState(name)
    allowed = ", ".join(s.value for s in LISTED_STATES)
    raise ValueError(f"state must be one of {allowed}, got {name!r}")


def _page(start: int, end: int) -> None:
    for label, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{label} must be a non-negative integer, got {value!r}")
    if end < start:
        raise ValueError(f"end ({end}) must not be less than start ({start})")
    if end - start + 1 > MAX_PAGE:
        raise ValueError(f"range too large: at most {MAX_PAGE} jobs per call")


class QueueReads:
    """Reads of one queue (mixed into :class:`engine.queue.Queue`)."""

    name: str
    store: Store
    keys: QueueKeys

    async def get_stats(self) -> QueueStats:
        """Counts per state, O(1) in Redis (LLEN + ZCARDs in one round trip)."""
        async with self.store.client.pipeline(transaction=False) as pipe:
            self._queue_stats(pipe)
            results = await pipe.execute()
        return self._stats_from(results)

    def _queue_stats(self, pipe: Any) -> None:
        """Queue exactly six commands on ``pipe`` (callers slice the replies by six):
        waiting (LLEN ``wait`` + ZCARD ``prioritized``, one EVAL), active, completed,
        failed, delayed, paused flag."""
        k = self.keys
        self._queue_waiting_count(pipe)
        for key in (k.active, k.completed, k.failed, k.delayed):
            pipe.zcard(key)
        pipe.hexists(k.meta, "paused")

    def _queue_waiting_count(self, pipe: Any) -> None:
        # EVAL, not EVALSHA: nothing to recover on NOSCRIPT, and a plain command works in
        # every pipeline (Cluster included: both keys are in the queue's slot).
        pipe.execute_command("EVAL", _COUNT_WAITING, 2, self.keys.wait, self.keys.prioritized)

    def _stats_from(self, results: Sequence[Any]) -> QueueStats:
        wait, active, completed, failed, delayed, paused_flag = (int(r) for r in results)
        # As in Bull: while a queue is paused its waiting jobs are counted as `paused`.
        waiting, paused = (0, wait) if paused_flag else (wait, 0)
        return QueueStats(
            name=self.name,
            waiting=waiting,
            active=active,
            completed=completed,
            failed=failed,
            delayed=delayed,
            paused=paused,
            total=wait + active + completed + failed + delayed,
        )

    async def count_jobs(self, state: str | JobState) -> int:
        """How many jobs are in ``state`` (O(1)). While paused, waiting jobs count here
        as ``waiting`` (``get_stats`` reports them as ``paused``)."""
        job_state = listed_state(state)
        client = self.store.client
        if job_state is JobState.WAITING:
            async with client.pipeline(transaction=False) as pipe:
                self._queue_waiting_count(pipe)
                (count,) = await pipe.execute()
            return int(count)
        return int(await client.zcard(self._state_key(job_state)))

    async def is_paused(self) -> bool:
        return bool(await self.store.client.hexists(self.keys.meta, "paused"))

    def _state_key(self, state: JobState) -> str:
        """The zset of a state. Waiting jobs are in two structures (the ``wait`` list, then
        the ``prioritized`` zset): see :meth:`count_jobs` and :meth:`get_jobs`."""
        k = self.keys
        zsets = {
            JobState.ACTIVE: k.active,
            JobState.DELAYED: k.delayed,
            JobState.COMPLETED: k.completed,
            JobState.FAILED: k.failed,
        }
        if state not in zsets:
            raise ValueError(f"{state} jobs are in no single zset")
        return zsets[state]

    def _state_keys(self) -> list[str]:
        """Every structure a job can be in, in the order the read scripts take them."""
        k = self.keys
        return [k.wait, k.prioritized, k.active, k.delayed, k.completed, k.failed]

    async def get_jobs(self, state: str | JobState, start: int = 0, end: int = 9) -> list[Job]:
        """Jobs in ``state`` from index ``start`` to ``end`` inclusive (finished jobs newest
        first, others in processing order). At most ``MAX_PAGE`` per call."""
        job_state = listed_state(state)
        _page(start, end)
        client = self.store.client
        if job_state is JobState.WAITING:
            # Claim order: the `wait` list (FIFO), then `prioritized`; one atomic read.
            ids = await self.store.scripts.list_waiting(
                [self.keys.wait, self.keys.prioritized], [start, end]
            )
        else:
            key = self._state_key(job_state)
            newest_first = job_state in (JobState.COMPLETED, JobState.FAILED)
            ids = await client.zrange(key, start, end, desc=newest_first)
        if not ids:
            return []
        async with client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
            hashes = await pipe.execute()
        # A job may finish or be cleaned between the two reads; skip what vanished.
        return [
            Job.from_hash(self.name, job_id, h, job_state)
            for job_id, h in zip(ids, hashes, strict=True)
            if h
        ]

    async def get_job(self, job_id: str) -> Job | None:
        """One job with the state it is in, or ``None``: one atomic read-only script (the
        hash, then the zsets, then, only for a job in none of them, the ``wait`` list from
        both ends; see ``lua/include/jobstate.lua``). A job in no structure at all is
        reported ``orphaned``, never taken for a waiting one."""
        job_id = str(job_id)
        reply = await self.store.scripts.read_job(
            [self.keys.job(job_id), *self._state_keys()], [job_id]
        )
        if not reply:
            return None
        state, *flat = reply
        h = dict(zip(flat[::2], flat[1::2], strict=True))
        return self._bind(Job.from_hash(self.name, job_id, h, JobState(state)))

    def _bind(self, job: Job) -> Job:
        """Hook: the queue binds what a read job needs beyond its data (``job.wait()``)."""
        return job

    async def get_job_logs(self, job_id: str, start: int = 0, end: int = 99) -> list[str]:
        """Log lines a processor wrote with ``job.log``, oldest first."""
        return list(await self.store.client.lrange(self.keys.logs(str(job_id)), start, end))

    async def events(self, count: int = 100) -> list[dict[str, str]]:
        """The newest ``count`` lifecycle events, newest first, each with its ``ts`` (ms)."""
        entries = await self.store.client.xrevrange(self.keys.events, count=min(count, MAX_PAGE))
        return [{"id": eid, "ts": eid.split("-")[0], **fields} for eid, fields in entries]

    async def check_consistency(self, sample: int = 20) -> ConsistencyReport:
        """Every job of the queue in exactly one state? See :mod:`engine.consistency`."""
        return await check_consistency(
            self.store.client, self.store.scripts, self.keys, self.name, sample
        )

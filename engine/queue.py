"""A queue: add jobs, read its state, and the admin operations on it.

Public methods validate and log; the Redis work is one script call (or one pipeline)
each, so every state change is atomic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

from . import tracing
from .connection import execute_acked
from .errors import InvalidJobState, JobNotFound, ReplicationTimeout, raise_for_code
from .job import DEFAULT_JOB_NAME, Job, JobState
from .keys import QueueKeys, validate_queue_name
from .options import JobOptions, Telemetry
from .scripts import LuaScript, execute
from .store import Store

if TYPE_CHECKING:
    from .waiters import ResultWaiters

logger = logging.getLogger("engine.queue")

MAX_PAGE = 1000
CLEAN_BATCH = 500
MAX_JOB_NAME_LEN = 200
# Waiting jobs are counted in one command (the list and the zset of one queue, same slot)
# so that _queue_stats stays at one command per field: callers slice its replies.
_COUNT_WAITING = "return redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])"
# Jobs per add_job call in add_bulk: the per-call cost of a script is paid once per batch,
# while one call still holds Redis for only about a millisecond.
ADD_BATCH = 200


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


@dataclass(frozen=True, slots=True)
class _Prepared:
    name: str
    data: Any
    options: JobOptions
    args: list[str | int]


@dataclass(frozen=True, slots=True)
class BulkJob:
    """One entry of :meth:`Queue.add_bulk`."""

    data: Any = None
    opts: Mapping[str, Any] | JobOptions | None = None
    name: str | None = None


def _dumps(value: Any, what: str) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        raise ValueError(f"{what} must be JSON-serialisable: {exc}") from None


def _outcomes(result: Sequence[Any]) -> list[tuple[str, bool, int]]:
    """``add_job``'s reply as (job id, created, now ms) per job of the batch."""
    now = int(result[0])
    return [(str(result[i]), bool(int(result[i + 1])), now) for i in range(1, len(result), 2)]


def _state(name: str | JobState) -> JobState:
    try:
        return JobState(name)
    except ValueError:
        allowed = ", ".join(s.value for s in JobState)
        raise ValueError(f"state must be one of {allowed}, got {name!r}") from None


class Queue:
    """A named queue in Redis. Get one from :meth:`QueueManager.create_queue`."""

    def __init__(
        self,
        store: Store,
        name: str,
        default_job_options: JobOptions | None = None,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        waiters: ResultWaiters | None = None,
    ) -> None:
        self.name = validate_queue_name(name)
        self.store = store
        self.keys: QueueKeys = store.keys(name)
        self.default_job_options = default_job_options or JobOptions()
        # Opt-in replica acknowledgement of adds (RedisSettings.wait_replicas).
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._waiters = waiters
        # Group commit of add(): the loop with an add on the wire, and the adds waiting.
        self._in_flight: asyncio.AbstractEventLoop | None = None
        self._gathering: list[tuple[_Prepared, asyncio.Future[tuple[str, bool, int]]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    def _prepare(
        self, data: Any, opts: Mapping[str, Any] | JobOptions | None, name: str | None
    ) -> _Prepared:
        options = JobOptions.parse(opts, self.default_job_options)
        if tracing.ENABLED:
            options = self._traced(options)
        job_name = DEFAULT_JOB_NAME if name is None else name
        if not isinstance(job_name, str) or not job_name or len(job_name) > MAX_JOB_NAME_LEN:
            raise ValueError(f"job name must be 1-{MAX_JOB_NAME_LEN} characters")
        args: list[str | int] = [
            options.job_id or "",
            job_name,
            _dumps(data, "job data"),
            _dumps(options.to_json(), "job options"),
            options.delay,
            options.priority,
        ]
        return _Prepared(job_name, data, options, args)

    def _traced(self, options: JobOptions) -> JobOptions:
        """Carry the producer's trace context to the worker (``opts.telemetry.metadata``)."""
        telemetry = options.telemetry or Telemetry()
        if telemetry.omit_context or telemetry.metadata is not None:
            return options
        with tracing.producing(self.name) as carrier:
            if carrier is None:
                return options
            return replace(options, telemetry=replace(telemetry, metadata=carrier))

    def _add_args(self, batch: Sequence[_Prepared]) -> list[str | int]:
        args: list[str | int] = [self.keys.job_prefix, self.store.max_events]
        for p in batch:
            args += p.args
        return args

    async def _queue_adds(self, pipe: Any, prepared: Sequence[_Prepared]) -> None:
        keys = self._add_keys()
        for start in range(0, len(prepared), ADD_BATCH):
            await self.store.scripts.add_job(
                keys, self._add_args(prepared[start : start + ADD_BATCH]), client=pipe
            )

    def _add_keys(self) -> list[str]:
        k = self.keys
        return [k.meta, k.wait, k.delayed, k.events, k.marker]

    def _added(self, job_id: str, now: int, p: _Prepared) -> Job:
        logger.info("Job %s added to queue %s", job_id, self.name)
        return Job(
            id=job_id,
            queue=self.name,
            name=p.name,
            data=p.data,
            opts=p.options,
            timestamp=now,
            state=JobState.DELAYED if p.options.delay else JobState.WAITING,
            _waiter=self.wait_for,
        )

    async def _existing(self, job_id: str) -> Job:
        logger.info("Job %s already exists in queue %s; not added again", job_id, self.name)
        job = await self.get_job(job_id)
        if job is None:  # removed in the instant between the add and this read
            raise JobNotFound(f"job {job_id} existed but was removed meanwhile")
        return job

    async def add(
        self,
        data: Any = None,
        opts: Mapping[str, Any] | JobOptions | None = None,
        *,
        name: str | None = None,
    ) -> Job:
        """Add one job. A fixed ``job_id`` that exists already returns the existing job and
        adds nothing. Raises ``ValueError`` naming a bad option or non-JSON data."""
        prepared = self._prepare(data, opts, name)
        if self.wait_replicas:
            (result,) = await self._add_acked([prepared])
            ((job_id, created, now),) = _outcomes(result)
        else:
            job_id, created, now = await self._add_coalesced(prepared)
        if not created:
            return await self._existing(job_id)
        return self._added(job_id, now, prepared)

    async def _add_coalesced(self, prepared: _Prepared) -> tuple[str, bool, int]:
        """Group commit: an add goes out at once unless one is already on the wire; then it
        waits and goes with every add made meanwhile in ONE script call, so 50 concurrent
        producers on one client share round trips while a lone producer pays nothing."""
        loop = asyncio.get_running_loop()
        if self._in_flight is loop:
            future: asyncio.Future[tuple[str, bool, int]] = loop.create_future()
            self._gathering.append((prepared, future))
            return await future
        self._in_flight = loop
        try:
            result = await self.store.scripts.add_job(self._add_keys(), self._add_args([prepared]))
        finally:
            self._send_gathered()
        return _outcomes(result)[0]

    def _send_gathered(self) -> None:
        if not self._gathering:
            self._in_flight = None
            return
        batch, self._gathering = self._gathering, []
        # A task of its own: a caller that is cancelled must not fail the others' adds.
        task = asyncio.ensure_future(self._send_adds(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_adds(
        self, batch: list[tuple[_Prepared, asyncio.Future[tuple[str, bool, int]]]]
    ) -> None:
        try:
            async with self.store.client.pipeline(transaction=False) as pipe:
                await self._queue_adds(pipe, [p for p, _ in batch])
                results = await execute(pipe)
        except BaseException as exc:
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._send_gathered()
        outcomes = [o for result in results for o in _outcomes(result)]
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def wait_for(self, job_id: str, timeout_s: float | None = None) -> Any:
        """The return value of job ``job_id`` once it completes; see :meth:`Job.wait`."""
        if self._waiters is None:
            raise InvalidJobState("waiting for a result needs a queue created by a QueueManager")
        return await self._waiters.wait(self, job_id, timeout_s)

    async def add_and_wait(
        self,
        data: Any = None,
        opts: Mapping[str, Any] | JobOptions | None = None,
        *,
        name: str | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """Add a job and wait for its outcome (:meth:`Job.wait`): the handler's return
        value, or ``JobFailed`` / ``WaitTimeout``. With a fixed ``job_id`` that exists,
        waits for the existing job."""
        job = await self.add(data, opts, name=name)
        return await self.wait_for(job.id, timeout_s)

    async def add_bulk(self, jobs: Iterable[BulkJob | Mapping[str, Any]]) -> list[Job]:
        """Add many jobs in one pipelined round trip. Everything is validated before
        anything is written, so one bad entry adds nothing."""
        prepared: list[_Prepared] = []
        for i, entry in enumerate(jobs):
            if isinstance(entry, Mapping):
                unknown = set(entry) - {"data", "opts", "name"}
                if unknown:
                    raise ValueError(
                        f"jobs[{i}] has unknown field(s): {', '.join(sorted(unknown))}"
                    )
                entry = BulkJob(entry.get("data"), entry.get("opts"), entry.get("name"))
            try:
                prepared.append(self._prepare(entry.data, entry.opts, entry.name))
            except ValueError as exc:
                raise ValueError(f"jobs[{i}]: {exc}") from None
        if not prepared:
            return []
        if self.wait_replicas:
            results = await self._add_acked(prepared)
        else:
            async with self.store.client.pipeline(transaction=False) as pipe:
                await self._queue_adds(pipe, prepared)
                results = await execute(pipe)
        outcomes = [o for result in results for o in _outcomes(result)]
        return [
            self._added(job_id, now, p) if created else await self._existing(job_id)
            for (job_id, created, now), p in zip(outcomes, prepared, strict=True)
        ]

    async def _add_acked(self, prepared: Sequence[_Prepared]) -> list[Any]:
        """Add in one pipeline followed by WAIT on the same connection; raise
        ``ReplicationTimeout`` when fewer replicas than asked have the jobs."""
        client = self.store.client
        async with client.pipeline(transaction=False) as pipe:
            await self._queue_adds(pipe, prepared)
            results, acked = await execute_acked(
                client, pipe, self.wait_replicas, self.wait_timeout_ms, self.keys.wait
            )
        if acked < self.wait_replicas:
            ids = [job_id for result in results for job_id, _, _ in _outcomes(result)]
            raise ReplicationTimeout(
                f"{len(ids)} job(s) written to the primary of queue {self.name} but only "
                f"{acked} of {self.wait_replicas} replica(s) acknowledged within "
                f"{self.wait_timeout_ms} ms; they may be lost on failover (re-add with the "
                "same job_id to be safe)",
                acked=acked,
                wanted=self.wait_replicas,
                job_ids=ids,
            )
        return results

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

    async def count_jobs(self, state: str | JobState) -> int:
        """How many jobs are in ``state`` (O(1)). While paused, waiting jobs count here
        as ``waiting`` (``get_stats`` reports them as ``paused``)."""
        job_state = _state(state)
        client = self.store.client
        if job_state is JobState.WAITING:
            async with client.pipeline(transaction=False) as pipe:
                self._queue_waiting_count(pipe)
                (count,) = await pipe.execute()
            return int(count)
        return int(await client.zcard(self._state_key(job_state)))

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

    async def is_paused(self) -> bool:
        return bool(await self.store.client.hexists(self.keys.meta, "paused"))

    def _state_key(self, state: JobState) -> str:
        """The zset of a state. Waiting jobs are in two structures (the ``wait`` list, then
        the ``prioritized`` zset): see :meth:`count_jobs` and :meth:`get_jobs`."""
        k = self.keys
        if state is JobState.WAITING:
            raise ValueError("waiting jobs are in `wait` (list) and `prioritized` (zset)")
        return {
            JobState.ACTIVE: k.active,
            JobState.DELAYED: k.delayed,
            JobState.COMPLETED: k.completed,
            JobState.FAILED: k.failed,
        }[state]

    async def get_jobs(self, state: str | JobState, start: int = 0, end: int = 9) -> list[Job]:
        """Jobs in ``state`` from index ``start`` to ``end`` inclusive (finished jobs newest
        first, others in processing order). At most ``MAX_PAGE`` per call."""
        job_state = _state(state)
        for label, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{label} must be a non-negative integer, got {value!r}")
        if end < start:
            raise ValueError(f"end ({end}) must not be less than start ({start})")
        if end - start + 1 > MAX_PAGE:
            raise ValueError(f"range too large: at most {MAX_PAGE} jobs per call")
        client = self.store.client
        if job_state is JobState.WAITING:
            ids = await self._waiting_ids(start, end)
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

    async def _waiting_ids(self, start: int, end: int) -> list[str]:
        """Waiting ids ``start``..``end`` in claim order: the ``wait`` list (no priority,
        FIFO), then the ``prioritized`` zset. Two reads at most; jobs claimed in between
        shift the page, as any listing of a live queue."""
        k = self.keys
        async with self.store.client.pipeline(transaction=True) as pipe:
            pipe.lrange(k.wait, start, end)
            pipe.llen(k.wait)
            listed, length = await pipe.execute()
        ids = list(listed)
        if end >= length:
            ids += await self.store.client.zrange(
                k.prioritized, max(start - length, 0), end - length
            )
        return ids

    async def get_job(self, job_id: str) -> Job | None:
        """One job with its current state, or ``None``.

        O(1): the job hash and a ZSCORE per zset (``prioritized``, ``active``, ``delayed``,
        ``completed``, ``failed``) in one transaction. Every job hash sits in exactly one
        structure (each script moves it atomically), so a job in none of the zsets is in
        the ``wait`` list, which is never searched (LPOS would be O(N))."""
        job_id = str(job_id)
        k = self.keys
        zsets = [
            (JobState.WAITING, k.prioritized),
            (JobState.ACTIVE, k.active),
            (JobState.DELAYED, k.delayed),
            (JobState.COMPLETED, k.completed),
            (JobState.FAILED, k.failed),
        ]
        async with self.store.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(k.job(job_id))
            for _, key in zsets:
                pipe.zscore(key, job_id)
            h, *scores = await pipe.execute()
        if not h:
            return None
        found = [s for (s, _), score in zip(zsets, scores, strict=True) if score is not None]
        job = Job.from_hash(self.name, job_id, h, found[0] if found else JobState.WAITING)
        job._waiter = self.wait_for
        return job

    async def get_job_logs(self, job_id: str, start: int = 0, end: int = 99) -> list[str]:
        """Log lines a processor wrote with ``job.log``, oldest first."""
        return list(await self.store.client.lrange(self.keys.logs(str(job_id)), start, end))

    async def pause(self, actor: str = "") -> bool:
        """Pause for every instance: once this returns no worker starts a new job.
        Returns False if it was already paused."""
        k = self.keys
        changed = await self.store.scripts.pause_queue(
            [k.meta, k.events, k.marker], ["1", actor, self.store.max_events]
        )
        logger.info("Queue %s paused%s", self.name, f" by {actor}" if actor else "")
        return bool(changed)

    async def resume(self, actor: str = "") -> bool:
        """Resume for every instance; blocked workers wake at once."""
        k = self.keys
        changed = await self.store.scripts.pause_queue(
            [k.meta, k.events, k.marker], ["0", actor, self.store.max_events]
        )
        logger.info("Queue %s resumed%s", self.name, f" by {actor}" if actor else "")
        return bool(changed)

    async def clean(self, state: str | JobState, grace_ms: int, actor: str = "") -> int:
        """Remove ``completed`` or ``failed`` jobs finished more than ``grace_ms`` ago, in
        bounded batches. Returns how many were removed."""
        job_state = _state(state)
        if job_state not in (JobState.COMPLETED, JobState.FAILED):
            raise ValueError(f"only completed or failed jobs can be cleaned, not {state!r}")
        if isinstance(grace_ms, bool) or not isinstance(grace_ms, int) or grace_ms < 0:
            raise ValueError(f"grace_ms must be a non-negative integer, got {grace_ms!r}")
        keys = [self._state_key(job_state), self.keys.events]
        removed = 0
        while True:
            n = int(
                await self.store.scripts.clean_jobs(
                    keys,
                    [
                        self.keys.job_prefix,
                        grace_ms,
                        CLEAN_BATCH,
                        job_state.value,
                        actor,
                        self.store.max_events,
                    ],
                )
            )
            removed += n
            if n < CLEAN_BATCH:
                break
        logger.info("Cleaned %d %s jobs from queue %s", removed, job_state.value, self.name)
        return removed

    async def _job_admin(self, script: LuaScript, keys: list[str], job_id: str, actor: str) -> None:
        code = int(
            await script(keys, [self.keys.job_prefix, str(job_id), actor, self.store.max_events])
        )
        raise_for_code(code, job_id=str(job_id), action=script.name.replace("_", " "))

    async def retry_job(self, job_id: str, actor: str = "") -> None:
        """Move a failed job back to waiting with its attempts reset."""
        k = self.keys
        await self._job_admin(
            self.store.scripts.retry_job,
            [k.meta, k.failed, k.wait, k.events, k.marker],
            job_id,
            actor,
        )
        logger.info("Job %s of queue %s retried", job_id, self.name)

    async def promote_job(self, job_id: str, actor: str = "") -> None:
        """Move a delayed job to waiting now."""
        k = self.keys
        await self._job_admin(
            self.store.scripts.promote_job,
            [k.meta, k.delayed, k.wait, k.events, k.marker],
            job_id,
            actor,
        )
        logger.info("Job %s of queue %s promoted", job_id, self.name)

    async def remove_job(self, job_id: str, actor: str = "") -> None:
        """Delete a job that is not active."""
        k = self.keys
        await self._job_admin(
            self.store.scripts.remove_job,
            [k.wait, k.delayed, k.completed, k.failed, k.active, k.events],
            job_id,
            actor,
        )
        logger.info("Job %s removed from queue %s", job_id, self.name)

    async def cancel_job(self, job_id: str, actor: str = "") -> JobState:
        """Fail a job that has not finished, at once and for good (reason ``cancelled by
        <actor>``); a running job's handler is stopped wherever it runs. Returns the state
        it was in. ``JobNotFound``, or ``JobNotCancellable`` for a finished job. See
        ``engine/cancel.py``."""
        from .cancel import cancel_job

        return await cancel_job(self, job_id, actor)

    async def events(self, count: int = 100) -> list[dict[str, str]]:
        """The newest ``count`` lifecycle events, newest first, each with its ``ts`` (ms)."""
        entries = await self.store.client.xrevrange(self.keys.events, count=min(count, MAX_PAGE))
        return [{"id": eid, "ts": eid.split("-")[0], **fields} for eid, fields in entries]


__all__ = ["MAX_PAGE", "BulkJob", "JobNotFound", "Queue", "QueueStats"]

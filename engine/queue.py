"""A queue: add jobs and the admin operations on it (its reads: engine/reads.py).

Public methods validate and log; the Redis work is one script call (or one pipeline)
each, so every state change is atomic. Every call that changes something is safe to send
twice (redis-py resends a call whose reply it did not get, and the first copy may have
been applied): each script call carries a fresh request key, under which the first copy
records its reply for the resend window (lua/include/request.lua), and the ids of new jobs
are decided before sending (engine/ids.py), so a resent add returns the first copy's jobs.
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
from .dedup import CREATED, EXISTED, REPLACED, Deduplication, call_tail
from .errors import InvalidJobState, JobNotFound, ReplicationTimeout, raise_for_code
from .ids import JobIds
from .job import DEFAULT_JOB_NAME, Job, JobState
from .keys import QueueKeys, new_request_id, validate_queue_name
from .options import JobOptions, Telemetry
from .reads import MAX_PAGE, QueueReads, QueueStats, listed_state
from .scripts import LuaScript, execute
from .store import Store

if TYPE_CHECKING:
    from .waiters import ResultWaiters

logger = logging.getLogger("engine.queue")

CLEAN_BATCH = 500
MAX_JOB_NAME_LEN = 200
# Jobs per add_job call in add_bulk: the per-call cost of a script is paid once per batch,
# while one call still holds Redis for only about a millisecond.
ADD_BATCH = 200


@dataclass(slots=True)
class _Prepared:
    """One validated job to add; ``job_id`` is "" until an id is assigned (set in place:
    ``dataclasses.replace`` would cost more than the rest of a lone add's Python work)."""

    name: str
    data: Any
    options: JobOptions
    args: tuple[str, str, str, int, int]  # name, data JSON, opts JSON, delay, priority
    job_id: str = ""
    dedup: Deduplication | None = None  # options.deduplication, read once


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


def _outcomes(result: Sequence[Any]) -> list[tuple[str, int, int]]:
    """``add_job``'s reply as (job id, code, now ms) per job of the batch; the codes are
    engine/dedup.py's CREATED, EXISTED, DEDUPLICATED, REPLACED."""
    now = int(result[0])
    return [(str(result[i]), int(result[i + 1]), now) for i in range(1, len(result), 2)]


def _admin_reply(reply: Sequence[Any]) -> tuple[int, str]:
    """(code, state) of retry_job / promote_job / remove_job."""
    return int(reply[0]), str(reply[1])


class Queue(QueueReads):
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
        self._ids = JobIds(store.client, self.keys.meta)
        # Group commit of add(): the loop with an add on the wire, and the adds waiting.
        self._in_flight: asyncio.AbstractEventLoop | None = None
        self._gathering: list[tuple[_Prepared, asyncio.Future[tuple[str, int, int]]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    def _prepare(
        self, data: Any, opts: Mapping[str, Any] | JobOptions | None, name: str | None
    ) -> _Prepared:
        options = JobOptions.parse(opts, self.default_job_options)
        if tracing.active():
            options = self._traced(options)
        job_name = DEFAULT_JOB_NAME if name is None else name
        if not isinstance(job_name, str) or not job_name or len(job_name) > MAX_JOB_NAME_LEN:
            raise ValueError(f"job name must be 1-{MAX_JOB_NAME_LEN} characters")
        args = (
            job_name,
            _dumps(data, "job data"),
            _dumps(options.to_json(), "job options"),
            options.delay,
            options.priority,
        )
        return _Prepared(job_name, data, options, args, options.job_id or "", options.deduplication)

    def _traced(self, options: JobOptions) -> JobOptions:
        """Carry the producer's trace context to the worker (``opts.telemetry.metadata``)."""
        telemetry = options.telemetry or Telemetry()
        if telemetry.omit_context or telemetry.metadata is not None:
            return options
        with tracing.producing(self.name) as carrier:
            if carrier is None:
                return options
            return replace(options, telemetry=replace(telemetry, metadata=carrier))

    async def _give_ids(self, prepared: Sequence[_Prepared]) -> None:
        """Give every job without a fixed id one reserved from the queue's counter (a round
        trip only when the reserved block runs out)."""
        unnamed = [p for p in prepared if not p.job_id]
        if not unnamed:
            return
        ids = self._ids.take_now(len(unnamed)) or await self._ids.take(len(unnamed))
        for p, job_id in zip(unnamed, ids, strict=True):
            p.job_id = job_id

    def _add_call(self, batch: Sequence[_Prepared]) -> tuple[list[str], list[str | int]]:
        """Keys and args of one add_job call: every job hash declared, a fresh request key;
        the deduplication tail only when a job of the batch has the option."""
        k = self.keys
        keys = [k.meta, k.wait, k.prioritized, k.delayed, k.events, k.marker]
        keys.append(k.request(new_request_id()))
        args: list[str | int] = [self.store.resend_window_ms, self.store.max_events, 0]
        deduplicated: list[tuple[int, Deduplication]] = []
        for p in batch:
            keys.append(k.job(p.job_id))
            args.append(p.job_id)
            args += p.args
            if p.dedup is not None:
                deduplicated.append((len(keys) - 7, p.dedup))
        if deduplicated:
            args[2] = len(deduplicated)
            tail_keys, tail_args = call_tail(k, deduplicated)
            keys += tail_keys
            args += tail_args
        return keys, args

    async def _queue_adds(self, pipe: Any, prepared: Sequence[_Prepared]) -> None:
        for start in range(0, len(prepared), ADD_BATCH):
            keys, args = self._add_call(prepared[start : start + ADD_BATCH])
            await self.store.scripts.add_job(keys, args, client=pipe)

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

    async def _outcome(self, job_id: str, code: int, now: int, p: _Prepared) -> Job:
        if code == CREATED:
            return self._added(job_id, now, p)
        if code == EXISTED:
            return await self._existing(job_id)
        return await self._deduplicated(job_id, code, p)

    async def _deduplicated(self, job_id: str, code: int, p: _Prepared) -> Job:
        dedup = p.dedup
        assert dedup is not None
        logger.info(
            "Job not added to queue %s: deduplication id %r is held by job %s%s",
            self.name,
            dedup.id,
            job_id,
            ", whose data was replaced" if code == REPLACED else "",
        )
        job = await self.get_job(job_id)
        if job is None:  # the window outlives its job (a ttl): only the id is known
            job = Job.from_hash(self.name, job_id, {})
        job.deduplicated = True
        return self._bind(job)

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
        adds nothing; so does a ``deduplication`` id whose window is open (the returned
        job's ``deduplicated`` is then true: engine/dedup.py). Raises ``ValueError`` naming
        a bad option or non-JSON data."""
        prepared = self._prepare(data, opts, name)
        if not prepared.job_id:
            ids = self._ids.take_now(1) or await self._ids.take(1)
            prepared.job_id = ids[0]
        if self.wait_replicas:
            (result,) = await self._add_acked([prepared])
            ((job_id, code, now),) = _outcomes(result)
        else:
            job_id, code, now = await self._add_coalesced(prepared)
        if code == CREATED:
            return self._added(job_id, now, prepared)
        return await self._outcome(job_id, code, now, prepared)

    async def _add_coalesced(self, prepared: _Prepared) -> tuple[str, int, int]:
        """Group commit: an add goes out at once unless one is already on the wire; then it
        waits and goes with every add made meanwhile in ONE script call, so 50 concurrent
        producers on one client share round trips while a lone producer pays nothing."""
        loop = asyncio.get_running_loop()
        if self._in_flight is loop:
            future: asyncio.Future[tuple[str, int, int]] = loop.create_future()
            self._gathering.append((prepared, future))
            return await future
        self._in_flight = loop
        try:
            result = await self.store.scripts.add_job(*self._add_call([prepared]))
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
        self, batch: list[tuple[_Prepared, asyncio.Future[tuple[str, int, int]]]]
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

    def _bind(self, job: Job) -> Job:
        job._waiter = self.wait_for
        return job

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
        await self._give_ids(prepared)
        if self.wait_replicas:
            results = await self._add_acked(prepared)
        else:
            async with self.store.client.pipeline(transaction=False) as pipe:
                await self._queue_adds(pipe, prepared)
                results = await execute(pipe)
        outcomes = [o for result in results for o in _outcomes(result)]
        return [
            self._added(job_id, now, p)
            if code == CREATED
            else await self._outcome(job_id, code, now, p)
            for (job_id, code, now), p in zip(outcomes, prepared, strict=True)
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

    async def pause(self, actor: str = "") -> bool:
        """Pause for every instance: once this returns no worker starts a new job.
        Returns False if it was already paused."""
        changed = await self._pause_queue(True, actor)
        logger.info("Queue %s paused%s", self.name, f" by {actor}" if actor else "")
        return changed

    async def resume(self, actor: str = "") -> bool:
        """Resume for every instance; blocked workers wake at once."""
        changed = await self._pause_queue(False, actor)
        logger.info("Queue %s resumed%s", self.name, f" by {actor}" if actor else "")
        return changed

    async def _pause_queue(self, pause: bool, actor: str) -> bool:
        k = self.keys
        changed = await self.store.scripts.pause_queue(
            [k.meta, k.events, k.marker, k.request(new_request_id())],
            ["1" if pause else "0", actor, self.store.max_events, self.store.resend_window_ms],
        )
        return bool(changed)

    async def clean(self, state: str | JobState, grace_ms: int, actor: str = "") -> int:
        """Remove ``completed`` or ``failed`` jobs finished more than ``grace_ms`` ago, in
        bounded batches. Returns how many were removed. The cutoff is fixed when the call
        starts (Redis's clock), so jobs finishing meanwhile never keep it going."""
        job_state = listed_state(state)
        if job_state not in (JobState.COMPLETED, JobState.FAILED):
            raise ValueError(f"only completed or failed jobs can be cleaned, not {state!r}")
        if isinstance(grace_ms, bool) or not isinstance(grace_ms, int) or grace_ms < 0:
            raise ValueError(f"grace_ms must be a non-negative integer, got {grace_ms!r}")
        client, k = self.store.client, self.keys
        seconds, micros = await client.time()
        cutoff = int(seconds) * 1000 + int(micros) // 1000 - grace_ms
        set_key = self._state_key(job_state)
        removed, calls = 0, 0
        while True:
            # Listed first so the script can declare every key it deletes; it re-checks each.
            ids = await client.zrangebyscore(set_key, "-inf", cutoff, start=0, num=CLEAN_BATCH)
            if not ids and calls:
                break
            calls += 1  # a first call with no ids records the (empty) clean in the audit
            keys = [set_key, k.events, k.request(new_request_id())]
            for job_id in ids:
                keys += [k.job(job_id), k.logs(job_id)]
            args: list[str | int] = [cutoff, job_state.value, actor, self.store.max_events]
            args += [self.store.resend_window_ms, *ids]
            n = int(await self.store.scripts.clean_jobs(keys, args))
            removed += n
            if len(ids) < CLEAN_BATCH:
                break
        logger.info("Cleaned %d %s jobs from queue %s", removed, job_state.value, self.name)
        return removed

    async def _job_admin(self, script: LuaScript, keys: list[str], job_id: str, actor: str) -> str:
        """Run retry/promote/remove; returns the state the job was in, or raises
        ``JobNotFound`` / ``InvalidJobState`` naming the state it is in."""
        k = self.keys
        code, state = _admin_reply(
            await script(
                [*keys, k.request(new_request_id())],
                [job_id, actor, self.store.max_events, self.store.resend_window_ms],
            )
        )
        raise_for_code(code, job_id=job_id, action=script.name.replace("_", " "), state=state)
        return state

    def _moving_keys(self, job_id: str) -> list[str]:
        k = self.keys
        return [k.meta, *self._state_keys(), k.events, k.marker, k.job(job_id)]

    async def retry_job(self, job_id: str, actor: str = "") -> None:
        """Move a failed job back to waiting with its attempts reset."""
        job_id = str(job_id)
        script = self.store.scripts.retry_job
        await self._job_admin(script, self._moving_keys(job_id), job_id, actor)
        logger.info("Job %s of queue %s retried", job_id, self.name)

    async def promote_job(self, job_id: str, actor: str = "") -> None:
        """Move a delayed job to waiting now."""
        job_id = str(job_id)
        script = self.store.scripts.promote_job
        await self._job_admin(script, self._moving_keys(job_id), job_id, actor)
        logger.info("Job %s of queue %s promoted", job_id, self.name)

    async def remove_job(self, job_id: str, actor: str = "") -> None:
        """Delete a job that is not active, with its log."""
        job_id = str(job_id)
        k = self.keys
        keys = [*self._state_keys(), k.events, k.job(job_id), k.logs(job_id)]
        state = await self._job_admin(self.store.scripts.remove_job, keys, job_id, actor)
        logger.info("Job %s (%s) removed from queue %s", job_id, state, self.name)

    async def cancel_job(self, job_id: str, actor: str = "") -> JobState:
        """Fail a job that has not finished, at once and for good (reason ``cancelled by
        <actor>``); a running job's handler is stopped wherever it runs. Returns the state
        it was in. ``JobNotFound``, or ``JobNotCancellable`` for a finished job. See
        ``engine/cancel.py``."""
        from .cancel import cancel_job

        return await cancel_job(self, job_id, actor)


__all__ = ["MAX_PAGE", "BulkJob", "JobNotFound", "Queue", "QueueStats"]

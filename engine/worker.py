"""The worker: takes jobs of one queue from Redis, runs the handler, records the outcome.

Roles of a :class:`Worker`:

1. The driver (one task) sends the finishes of ended jobs and the claim for the free
   slots in ONE pipeline, so a busy worker spends one round trip per job or less. It
   blocks on the queue's ``marker`` (BZPOPMIN, on a connection of its own) only when a
   claim came back short, bounded by the next delayed job's due time.
2. One task per running job calls the handler (loop, thread or process pool, see
   ``pool.py``), under the job's ``timeout``.
3. The lease keeper renews every running job's lease in one script call per interval;
   a lease found lost means another worker may now own the job, and every later call of
   this attempt is refused by Redis.
4. Stalled recovery runs on every instance at ``stalled_interval_ms`` (one guarded call).
5. Redis errors never crash or spin it: a capped exponential backoff, logged once per
   outage.

Delivery is at-least-once: a job whose worker dies runs again after its lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError, RedisError, ResponseError

from .connection import RedisSettings, create_client
from .errors import LeaseLost, UnrecoverableError, raise_for_code
from .job import DEFAULT_JOB_NAME, Job, JobState
from .keys import validate_queue_name
from .options import JobOptions, Retention
from .pool import Handler, HandlerRunner
from .scripts import execute
from .store import Store

if TYPE_CHECKING:
    from .manager import QueueManager

logger = logging.getLogger("engine.worker")

BackoffStrategy = Callable[[int, BaseException, Job], int]
# A blocking connection must outlive its longest block, or the client times it out.
_BLOCK_SOCKET_MARGIN_S = 5.0
_MAX_STACK_CHARS = 8000
_CLOSE_FLUSH_S = 5.0
# Most jobs finished by one complete_job call (bounds the script's run and its unpack).
_COMPLETE_CHUNK = 500
# From this concurrency on, the driver keeps two exchanges in flight (each claiming half
# the slots): the next one goes out while Redis runs the last. Below it, halving the
# batches costs more than the overlap saves (measured: c=10 -20%, c=50 +30%).
_OVERLAP_FROM = 32
# A blocking pop may time out a hair before the due time it was sized for.
_DUE_SLACK_S = 0.005


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``max`` jobs of the queue start per ``duration_ms`` (sliding window), across
    every instance. Workers of one queue should agree on it."""

    max: int
    duration_ms: int

    def __post_init__(self) -> None:
        for name, value in (
            ("rate_limit.max", self.max),
            ("rate_limit.duration_ms", self.duration_ms),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker runs. Durations carry their unit; ``renew_interval_ms`` defaults to a
    third of the lease. ``backoff_strategy(attempts_made, error, job) -> delay_ms`` serves
    jobs whose backoff type is ``custom``."""

    concurrency: int = 1
    lease_ms: int = 30_000
    renew_interval_ms: int | None = None
    stalled_interval_ms: int = 30_000
    max_stalled_count: int = 1
    block_timeout_s: float = 5.0
    fetch_batch: int = 100
    rate_limit: RateLimit | None = None
    backoff_strategy: BackoffStrategy | None = None
    use_process_pool: bool = False
    pool_size: int | None = None
    max_stack_traces: int = 10
    reconnect_max_s: float = 5.0
    retention_batch: int = 1000
    promote_batch: int = 1000

    def __post_init__(self) -> None:
        ints = (
            ("concurrency", self.concurrency, 1, 10_000),
            ("lease_ms", self.lease_ms, 100, 24 * 3600 * 1000),
            ("stalled_interval_ms", self.stalled_interval_ms, 10, 24 * 3600 * 1000),
            ("max_stalled_count", self.max_stalled_count, 0, 1000),
            ("fetch_batch", self.fetch_batch, 1, 10_000),
            ("max_stack_traces", self.max_stack_traces, 1, 1000),
            ("retention_batch", self.retention_batch, 1, 100_000),
            ("promote_batch", self.promote_batch, 1, 100_000),
        )
        for name, value, lo, hi in ints:
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer between {lo} and {hi}, got {value!r}")
        renew = self.renew_ms
        if isinstance(renew, bool) or not isinstance(renew, int) or renew < 10:
            raise ValueError(f"renew_interval_ms must be an integer >= 10, got {renew!r}")
        if renew * 2 > self.lease_ms:
            # Renewing at most every half lease leaves one missed renewal of slack.
            raise ValueError(
                f"renew_interval_ms ({renew}) must be at most half of lease_ms ({self.lease_ms})"
            )
        for name, fvalue in (
            ("block_timeout_s", self.block_timeout_s),
            ("reconnect_max_s", self.reconnect_max_s),
        ):
            if isinstance(fvalue, bool) or not isinstance(fvalue, int | float) or fvalue <= 0:
                raise ValueError(f"{name} must be a positive number, got {fvalue!r}")
        if self.pool_size is not None and (
            isinstance(self.pool_size, bool)
            or not isinstance(self.pool_size, int)
            or self.pool_size < 1
        ):
            raise ValueError(f"pool_size must be a positive integer, got {self.pool_size!r}")
        if self.backoff_strategy is not None and not callable(self.backoff_strategy):
            raise ValueError("backoff_strategy must be callable")
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise ValueError("rate_limit must be a RateLimit(max, duration_ms)")

    @property
    def renew_ms(self) -> int:
        return self.lease_ms // 3 if self.renew_interval_ms is None else self.renew_interval_ms


def _retention_args(r: Retention) -> tuple[int, int]:
    return (-1 if r.count is None else r.count, -1 if r.age_s is None else r.age_s * 1000)


class _Outage:
    """Capped exponential backoff for Redis errors, logged once per outage."""

    def __init__(self, what: str, cap_s: float) -> None:
        self.what = what
        self.cap_s = cap_s
        self.down = False
        self.failures = 0

    def failed(self, exc: BaseException) -> float:
        if not self.down:
            self.down = True
            if isinstance(exc, ResponseError) and not isinstance(exc, ReadOnlyError):
                logger.error("Redis error in %s: %r; retrying with backoff", self.what, exc)
            else:
                logger.warning(
                    "Redis unavailable for %s (%s); retrying with backoff", self.what, exc
                )
        self.failures += 1
        delay = min(self.cap_s, 0.05 * float(2 ** min(self.failures, 20)))
        return delay * (0.5 + random.random() / 2)

    def ok(self) -> None:
        if self.down:
            logger.warning("Redis connection restored for %s", self.what)
        self.down = False
        self.failures = 0


_REDIS_ERRORS = (RedisError, OSError)


@dataclass(slots=True, eq=False)
class _Attempt:
    """One claimed attempt of a job: its lease token and the task running it."""

    worker: Worker
    job: Job
    token: str
    task: asyncio.Task[None] | None = None
    lost: bool = False
    released: bool = False

    async def update_progress(self, progress: Any) -> None:
        w = self.worker
        try:
            value = orjson.dumps(progress).decode()
        except TypeError as exc:
            raise ValueError(f"progress must be JSON-serialisable: {exc}") from None
        code = await w.store.scripts.update_progress(
            [w.keys.active, w.keys.events],
            [w.keys.job_prefix, self.job.id, self.token, value, w.store.max_events],
        )
        self._check(int(code), "progress update")

    async def log(self, text: str) -> None:
        w = self.worker
        code = await w.store.scripts.add_log(
            [w.keys.active],
            [w.keys.job_prefix, self.job.id, self.token, str(text), w.store.max_log_lines],
        )
        self._check(int(code), "log")

    def _check(self, code: int, action: str) -> None:
        if code == -2:
            logger.warning(
                "%s refused for job %s of queue %s: lease lost",
                action.capitalize(),
                self.job.id,
                self.job.queue,
            )
        raise_for_code(code, job_id=self.job.id, action=action)


@dataclass(slots=True)
class _Finish:
    attempt: _Attempt
    complete: bool
    args: list[str | int]
    delay_ms: int = -1
    reason: str = ""


class Worker:
    """Processes the jobs of one queue with ``handler(job)``; its return value (JSON) is
    stored as the job's result. Build from a :class:`QueueManager` (or a ``Store``), then
    ``await start()`` and eventually ``await close(timeout_s=...)``."""

    def __init__(
        self,
        owner: QueueManager | Store,
        queue_name: str,
        handler: Handler,
        options: WorkerOptions | None = None,
    ) -> None:
        self.options = options or WorkerOptions()
        self.queue_name = validate_queue_name(queue_name)
        self.store: Store = owner if isinstance(owner, Store) else owner.store
        self._settings: RedisSettings | None = getattr(owner, "settings", None)
        self.keys = self.store.keys(queue_name)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        o = self.options
        self._runner = HandlerRunner(
            handler,
            threads=o.concurrency,
            processes=(o.pool_size or min(o.concurrency, os.cpu_count() or 1))
            if o.use_process_pool
            else None,
        )
        self._outage = _Outage(f"worker {self.id} of queue {queue_name}", o.reconnect_max_s)
        # Keyed by (job id, token): a token is unique per job only.
        self._attempts: dict[tuple[str, str], _Attempt] = {}
        self._busy = 0
        self._pending: list[_Finish] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._closed = False
        self._queue_empty = False
        self._limited_until = 0.0
        self._next_due: float | None = None
        # Exchanges (pipelines) in flight, at most ``_depth``; slots their claims asked for.
        self._inflight: set[asyncio.Task[None]] = set()
        self._reserved = 0
        self._backoff_until = 0.0
        # Whether the next blocking pop carries a claim, and how many slots it asked for.
        self._warm = False
        self._block_count = 0
        self._depth = 2 if o.concurrency >= _OVERLAP_FROM else 1
        self._per_exchange = max(1, -(-o.concurrency // self._depth))
        self._opts_cache: dict[str, JobOptions] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._driver: asyncio.Task[None] | None = None
        self._blocker: asyncio.Task[Any] | None = None
        self._block_client: Any = None
        k = self.keys
        self._claim_keys = [k.meta, k.wait, k.delayed, k.active, k.events, k.marker, k.limiter]
        self._fail_keys = [k.active, k.wait, k.delayed, k.failed, k.meta, k.events, k.marker]
        self._complete_keys = [k.active, k.completed, k.events]

    def __repr__(self) -> str:
        return f"Worker({self.queue_name!r}, id={self.id!r})"

    @property
    def running(self) -> int:
        """Handlers running now."""
        return self._busy

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> Worker:
        """Start fetching. Returns at once; the worker runs until :meth:`close`."""
        if self._driver is not None:
            return self
        self._block_client = self._new_block_client()
        self._driver = asyncio.create_task(self._drive(), name=f"worker-{self.queue_name}")
        self._tasks = [
            asyncio.create_task(self._keep_leases(), name="worker-leases"),
            asyncio.create_task(self._recover_stalled(), name="worker-stalled"),
        ]
        logger.info(
            "Worker %s started on queue %s (concurrency %d)",
            self.id,
            self.queue_name,
            self.options.concurrency,
        )
        return self

    async def close(self, timeout_s: float = 30.0) -> None:
        """Stop fetching, let running jobs finish within ``timeout_s``, hand the others back
        to ``wait`` at once, then release everything. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._wake.set()
        blocker = self._blocker
        if blocker is not None:
            blocker.cancel()
            await asyncio.gather(blocker, return_exceptions=True)
            if blocker.cancelled():
                # The pop may have taken a marker on the server whose reply we dropped:
                # put a wake-up back so another worker claims (at worst a spare claim).
                with contextlib.suppress(*_REDIS_ERRORS, TimeoutError):
                    await asyncio.wait_for(
                        self.store.client.zadd(self.keys.marker, {"w": 0}), _CLOSE_FLUSH_S
                    )
        handlers = [a.task for a in self._attempts.values() if a.task and not a.task.done()]
        if handlers:
            await asyncio.wait(handlers, timeout=max(timeout_s, 0))
        leftover = [a for a in self._attempts.values() if a.task and not a.task.done()]
        for attempt in leftover:
            attempt.released = True
            assert attempt.task is not None
            attempt.task.cancel()
        if leftover:
            await asyncio.gather(*(a.task for a in leftover if a.task), return_exceptions=True)
            await self._release(leftover)
        if self._driver is not None:
            # Flush the finishes of jobs that ended in the grace period (bounded: Redis
            # may be down; unsent finishes then re-run after their lease expires).
            try:
                await asyncio.wait_for(asyncio.shield(self._driver), _CLOSE_FLUSH_S)
            except TimeoutError:
                logger.warning(
                    "Worker %s closing: %d finished job(s) of queue %s could not be recorded",
                    self.id,
                    len(self._pending),
                    self.queue_name,
                )
        tasks = [*self._tasks, self._driver, *self._inflight]
        for task in tasks:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in tasks if t), return_exceptions=True)
        self._runner.shutdown()
        if self._block_client is not None:
            await self._block_client.aclose()
        self._attempts.clear()
        logger.info("Worker %s of queue %s closed", self.id, self.queue_name)

    async def _release(self, attempts: list[_Attempt]) -> None:
        pairs: list[str | int] = []
        for a in attempts:
            pairs += [a.job.id, a.token]
        k = self.keys
        for _ in range(3):
            try:
                released = await self.store.scripts.release_jobs(
                    [k.active, k.wait, k.events, k.marker],
                    [k.job_prefix, self.store.max_events, *pairs],
                )
            except _REDIS_ERRORS as exc:
                await asyncio.sleep(self._outage.failed(exc))
                continue
            for job_id in released:
                logger.info(
                    "Job %s handed back to queue %s (worker closing)", job_id, self.queue_name
                )
            return
        logger.warning(
            "Worker %s could not hand back %d job(s) of queue %s; they re-run after their lease",
            self.id,
            len(attempts),
            self.queue_name,
        )

    def _new_block_client(self) -> Any:
        timeout = self.options.block_timeout_s + _BLOCK_SOCKET_MARGIN_S
        if self._settings is not None:
            return create_client(self._settings, socket_timeout_s=timeout)
        pool = self.store.client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        kwargs["socket_timeout"] = timeout
        return Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs))

    # -- the driver ---------------------------------------------------------------

    def _free(self) -> int:
        return self.options.concurrency - self._busy

    def _claim_count(self) -> int:
        """Slots to claim now: free slots not already asked for by an exchange in flight,
        at most ``fetch_batch`` and, so that two exchanges can overlap, at most
        ``concurrency / depth``."""
        if self._closing or self._queue_empty or time.monotonic() < self._limited_until:
            return 0
        o = self.options
        free = self._free() - self._reserved
        return max(0, min(free, o.fetch_batch, self._per_exchange))

    async def _drive(self) -> None:
        while True:
            self._wake.clear()
            if self._closing and not self._pending and self._busy == 0 and not self._inflight:
                return
            backoff_s = self._backoff_until - time.monotonic()
            if len(self._inflight) < self._depth and backoff_s <= 0:
                count = self._claim_count()
                if self._pending or count:
                    self._reserved += count
                    finishes, self._pending = self._pending, []
                    task = asyncio.create_task(self._exchange(finishes, count))
                    self._inflight.add(task)
                    task.add_done_callback(self._exchanged)
                    continue
            if self._inflight:
                await self._wake.wait()
            elif backoff_s > 0:
                await asyncio.sleep(backoff_s)
            else:
                await self._idle()

    def _exchanged(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def _exchange(self, finishes: list[_Finish], count: int) -> None:
        """Send pending finishes and (maybe) a claim for ``count`` slots in one pipeline.
        On a Redis error, sets when the driver may try again."""
        try:
            backoff_s = await self._send(finishes, count)
        finally:
            self._reserved -= count
        if backoff_s is not None:
            self._backoff_until = max(self._backoff_until, time.monotonic() + backoff_s)

    def _claim_args(self, count: int) -> list[str | int]:
        o = self.options
        rate = o.rate_limit
        return [
            self.keys.job_prefix,
            self.id,
            count,
            o.lease_ms,
            self.store.max_events,
            rate.max if rate else 0,
            rate.duration_ms if rate else 0,
            o.promote_batch,
        ]

    async def _send(self, finishes: list[_Finish], count: int) -> float | None:
        scripts = self.store.scripts
        o = self.options
        completes = [f for f in finishes if f.complete]
        fails = [f for f in finishes if not f.complete]
        chunks = [
            completes[i : i + _COMPLETE_CHUNK] for i in range(0, len(completes), _COMPLETE_CHUNK)
        ]
        k = self.keys
        try:
            async with self.store.client.pipeline(transaction=False) as pipe:
                for chunk in chunks:
                    args: list[str | int] = [k.job_prefix, self.store.max_events, o.retention_batch]
                    for f in chunk:
                        args += f.args
                    await scripts.complete_job(self._complete_keys, args, client=pipe)
                for f in fails:
                    await scripts.fail_job(self._fail_keys, f.args, client=pipe)
                if count:
                    await scripts.move_to_active(
                        self._claim_keys, self._claim_args(count), client=pipe
                    )
                results = await execute(pipe)
        except _REDIS_ERRORS as exc:
            backoff_s = self._outage.failed(exc)
            if isinstance(exc, ResponseError) and not isinstance(exc, ReadOnlyError):
                # A script error will not heal by retrying: leave these jobs to stalled
                # recovery rather than loop on them.
                for f in finishes:
                    self._attempts.pop((f.attempt.job.id, f.attempt.token), None)
            else:
                self._pending = finishes + self._pending
            return backoff_s
        self._outage.ok()
        for chunk, result in zip(chunks, results, strict=False):
            _now, codes, durations = result
            for f, code, duration in zip(chunk, codes, durations, strict=True):
                self._completed(f, int(code), int(duration))
        for f, result in zip(fails, results[len(chunks) :], strict=False):
            self._failed(f, result)
        if count:
            self._claimed(results[-1], count)
        return None

    async def _idle(self) -> None:
        self._wake.clear()
        now = time.monotonic()
        if self._closing or self._free() == 0:
            due = None if self._closing else self._next_due
            if due is None:
                await self._wake.wait()
            else:
                await self._hand_off_due(due - now)
            return
        if self._limited_until > now:
            await self._sleep_or_wake(self._limited_until - now)
            return
        if self._blocker is None:
            timeout = self.options.block_timeout_s
            if self._next_due is not None:
                timeout = min(timeout, max(self._next_due - now, 0.0))
            # Warm (the last pop returned a marker): the claim rides behind the pop on the
            # blocking connection, so a wake-up costs no second round trip. After a
            # timeout, a bare pop (one command per timeout while idle).
            count = min(self._free(), self.options.fetch_batch, self._per_exchange)
            count = count if self._warm else 0
            self._block_count = count
            self._reserved += count
            # BZPOPMIN treats 0 as "forever": never ask for less than 10 ms.
            self._blocker = asyncio.create_task(self._block(max(timeout, 0.01), count))
        waker = asyncio.create_task(self._wake.wait())
        await asyncio.wait([self._blocker, waker], return_when=asyncio.FIRST_COMPLETED)
        waker.cancel()
        if not self._blocker.done():
            return  # a finish to send, or a re-check; keep blocking afterwards
        blocker, self._blocker = self._blocker, None
        count, self._block_count = self._block_count, 0
        self._reserved -= count
        if blocker.cancelled():
            self._queue_empty = False
            return
        exc = blocker.exception()
        if exc is not None:
            # Whatever the blocking call raised (redis-py may raise odd errors for a
            # connection torn down mid-handshake), the worker backs off, never dies.
            # A claim whose reply was lost leaves its jobs to stalled recovery.
            self._queue_empty = False
            self._warm = False
            await asyncio.sleep(self._outage.failed(exc))
            return
        popped, claimed = blocker.result()
        self._warm = popped is not None  # a timeout: idle, bare pops from now on
        if claimed is not None:
            self._outage.ok()
            self._queue_empty = False
            self._claimed(claimed, count)  # short: the queue is empty, block again
            return
        due = self._next_due
        if popped is not None or (due is not None and time.monotonic() >= due - _DUE_SLACK_S):
            # A marker (jobs ready, a delayed job announced, a resume) or a delayed job
            # due: claim. A plain timeout with nothing due costs no claim: block again.
            self._queue_empty = False

    async def _block(self, timeout_s: float, count: int) -> tuple[Any, Any]:
        """BZPOPMIN on the marker, and with ``count`` the claim right behind it (same
        connection, one pipeline: Redis runs it as soon as the pop returns)."""
        marker = [self.keys.marker]
        if not count:
            return await self._block_client.bzpopmin(marker, timeout_s), None
        async with self._block_client.pipeline(transaction=False) as pipe:
            pipe.bzpopmin(marker, timeout_s)
            await self.store.scripts.move_to_active(
                self._claim_keys, self._claim_args(count), client=pipe
            )
            popped, claimed = await execute(pipe)
        return popped, claimed

    async def _hand_off_due(self, delay_s: float) -> None:
        """Every slot is busy and this worker knows a delayed job falls due: if it is still
        full then, wake a blocked worker of the queue (it claims, which promotes the job),
        since the others may not know the due time (a `d` marker wakes one worker)."""
        await self._sleep_or_wake(max(delay_s, 0.0))
        if self._wake.is_set() or self._closing or self._free() > 0:
            return
        try:
            await self.store.client.zadd(self.keys.marker, {"d": 0})
        except _REDIS_ERRORS as exc:
            await asyncio.sleep(self._outage.failed(exc))
            return
        self._next_due = None  # learnt again at this worker's next claim

    async def _sleep_or_wake(self, delay_s: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay_s)

    # -- claims and finishes ------------------------------------------------------

    def _claimed(self, result: list[Any], asked: int) -> None:
        now_ms, _paused, limited_ms, next_due, jobs = result
        mono = time.monotonic()
        self._next_due = None if int(next_due) < 0 else mono + (int(next_due) - int(now_ms)) / 1000
        if int(limited_ms) > 0:
            self._limited_until = mono + int(limited_ms) / 1000
        if len(jobs) < asked:
            self._queue_empty = True
        if jobs:
            self._warm = True
        for raw in jobs:
            self._start(raw, int(now_ms))

    def _options(self, raw: str) -> JobOptions:
        opts = self._opts_cache.get(raw)
        if opts is None:
            opts = JobOptions.from_json(orjson.loads(raw)) if raw else JobOptions()
            if len(self._opts_cache) < 1024:
                self._opts_cache[raw] = opts
        return opts

    def _start(self, raw: list[Any], now_ms: int) -> None:
        job_id, token, name, data, opts, atm, ts, stc, prog = raw
        job = Job(
            id=job_id,
            queue=self.queue_name,
            name=name or DEFAULT_JOB_NAME,
            data=orjson.loads(data),
            opts=self._options(opts),
            timestamp=int(ts),
            attempts_made=int(atm),
            stalled_count=int(stc),
            progress=orjson.loads(prog) if prog else 0,
            processed_on=now_ms,
            state=JobState.ACTIVE,
        )
        attempt = _Attempt(self, job, token)
        job._runtime = attempt
        self._attempts[(job_id, token)] = attempt
        self._busy += 1
        attempt.task = asyncio.create_task(self._run(attempt))
        logger.info("Job %s active in queue %s", job_id, self.queue_name)

    async def _run(self, attempt: _Attempt) -> None:
        job = attempt.job
        logger.info("Processing job %s of queue %s", job.id, self.queue_name)
        try:
            finish = await self._attempt(attempt)
        except asyncio.CancelledError:
            if attempt.released:
                return  # close() hands it back
            raise
        finally:
            self._busy -= 1
            self._wake.set()
        self._pending.append(finish)

    async def _attempt(self, attempt: _Attempt) -> _Finish:
        job = attempt.job
        timeout_ms = job.opts.timeout
        try:
            if timeout_ms is None:
                result = await self._runner(job)
            else:
                try:
                    async with asyncio.timeout(timeout_ms / 1000) as scope:
                        result = await self._runner(job)
                except TimeoutError:
                    if not scope.expired():
                        raise
                    return self._fail(attempt, None, f"job timed out after {timeout_ms} ms")
            rv = orjson.dumps(result).decode()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the handler's failure is the job's, never the worker's
            return self._fail(attempt, exc, str(exc) or type(exc).__name__)
        keep, age_ms = _retention_args(job.opts.remove_on_complete)
        return _Finish(attempt, True, [job.id, attempt.token, rv, keep, age_ms])

    def _fail(self, attempt: _Attempt, exc: BaseException | None, reason: str) -> _Finish:
        job = attempt.job
        made = job.attempts_made + 1
        final = isinstance(exc, UnrecoverableError) or made >= job.opts.attempts
        delay = -1 if final else self._retry_delay(job, made, exc)
        stack = ""
        if exc is not None:
            stack = "".join(traceback.format_exception(exc))[-_MAX_STACK_CHARS:]
        keep, age_ms = _retention_args(job.opts.remove_on_fail)
        args: list[str | int] = [
            self.keys.job_prefix,
            job.id,
            attempt.token,
            reason,
            stack,
            self.options.max_stack_traces,
            delay,
            keep,
            age_ms,
            self.store.max_events,
            self.options.retention_batch,
        ]
        return _Finish(attempt, False, args, delay, reason)

    def _retry_delay(self, job: Job, attempts_made: int, exc: BaseException | None) -> int:
        backoff = job.opts.backoff
        if backoff is None:
            return 0
        strategy = self.options.backoff_strategy
        if backoff.type == "custom" and strategy is not None:
            error: BaseException = exc if exc is not None else TimeoutError("job timed out")
            try:
                return max(int(strategy(attempts_made, error, job)), 0)
            except Exception:
                logger.exception(
                    "backoff_strategy failed for job %s; using %d ms", job.id, backoff.delay
                )
                return backoff.delay
        return backoff.delay_for(attempts_made, random.random())

    def _lease_lost(self, f: _Finish) -> None:
        logger.warning(
            "Job %s of queue %s: %s refused, lease lost (the job was recovered elsewhere)",
            f.attempt.job.id,
            self.queue_name,
            "completion" if f.complete else "failure",
        )

    def _completed(self, f: _Finish, code: int, duration_ms: int) -> None:
        attempt = f.attempt
        self._attempts.pop((attempt.job.id, attempt.token), None)
        if code == 1:
            logger.info(
                "Job %s completed in queue %s (%d ms)", attempt.job.id, self.queue_name, duration_ms
            )
        elif code == -2:
            self._lease_lost(f)
        # 0: this very call already ran (a retried pipeline)

    def _failed(self, f: _Finish, result: Any) -> None:
        attempt = f.attempt
        job = attempt.job
        self._attempts.pop((job.id, attempt.token), None)
        if isinstance(result, int):
            if result == -2:
                self._lease_lost(f)
            return  # 0: this very call already ran (a retried pipeline)
        if int(result[1]):
            logger.info(
                "Job %s failed in queue %s (attempt %d of %d): %s; retrying in %d ms",
                job.id,
                self.queue_name,
                int(result[2]),
                job.opts.attempts,
                f.reason,
                f.delay_ms,
            )
            if f.delay_ms > 0:
                due = time.monotonic() + f.delay_ms / 1000
                self._next_due = due if self._next_due is None else min(self._next_due, due)
        else:
            logger.warning("Job %s failed in queue %s: %s", job.id, self.queue_name, f.reason)

    # -- leases and stalled recovery --------------------------------------------

    async def _keep_leases(self) -> None:
        interval_s = self.options.renew_ms / 1000
        k = self.keys
        while True:
            await asyncio.sleep(interval_s)
            held = [a for a in self._attempts.values() if not a.lost]
            if not held:
                continue
            pairs: list[str | int] = []
            for a in held:
                pairs += [a.job.id, a.token]
            try:
                lost = await self.store.scripts.extend_leases(
                    [k.active], [k.job_prefix, self.options.lease_ms, *pairs]
                )
            except _REDIS_ERRORS as exc:
                self._outage.failed(exc)
                continue
            self._outage.ok()
            for job_id, token in lost:
                attempt = self._attempts.get((job_id, token))
                if attempt is not None and not attempt.lost:
                    attempt.lost = True
                    logger.warning(
                        "Lease lost on job %s of queue %s; its outcome will be refused",
                        attempt.job.id,
                        self.queue_name,
                    )

    async def _recover_stalled(self) -> None:
        o = self.options
        k = self.keys
        keys = [k.active, k.wait, k.failed, k.events, k.marker, k.stalled_check]
        while True:
            try:
                requeued, failed = await self.store.scripts.recover_stalled(
                    keys,
                    [
                        k.job_prefix,
                        o.max_stalled_count,
                        1000,
                        self.store.max_events,
                        o.stalled_interval_ms,
                    ],
                )
            except _REDIS_ERRORS as exc:
                self._outage.failed(exc)
            else:
                for job_id in requeued:
                    logger.warning(
                        "Job %s stalled in queue %s; moved back to waiting", job_id, self.queue_name
                    )
                for job_id in failed:
                    logger.warning(
                        "Job %s stalled in queue %s; failed: stalled more than allowable limit",
                        job_id,
                        self.queue_name,
                    )
            # Safety net for a lost wake-up (a worker that popped a marker and died before
            # its claim): an idle worker claims once per interval, not per blocking timeout.
            self._queue_empty = False
            self._wake.set()
            await asyncio.sleep(o.stalled_interval_ms / 1000)


__all__ = ["BackoffStrategy", "LeaseLost", "RateLimit", "Worker", "WorkerOptions"]

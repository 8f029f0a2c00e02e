"""The claim/finish exchange: the driver task that talks to Redis for a worker's jobs.

It sends the finishes of ended jobs and the claim for the free slots in ONE pipeline, so
a busy worker spends one round trip per job or less. It blocks on the queue's ``marker``
(BZPOPMIN, on a connection of its own) only when a claim came back short, bounded by the
next delayed job's due time. See docs/ARCHITECTURE.md, "Worker".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError, ResponseError

from .. import tracing
from ..connection import create_client
from ..scripts import execute
from .attempt import Finish
from .outage import REDIS_ERRORS, Outage

if TYPE_CHECKING:
    from .core import Worker

logger = logging.getLogger("engine.worker")

# A blocking connection must outlive its longest block, or the client times it out.
_BLOCK_SOCKET_MARGIN_S = 5.0
# Most jobs finished by one complete_job call (bounds the script's run and its unpack).
_COMPLETE_CHUNK = 500
# From this concurrency on, the driver keeps two exchanges in flight (each claiming half
# the slots): the next one goes out while Redis runs the last. Below it, halving the
# batches costs more than the overlap saves (measured: c=10 -20%, c=50 +30%).
_OVERLAP_FROM = 32
# A blocking pop may time out a hair before the due time it was sized for.
_DUE_SLACK_S = 0.005


class Exchange:
    """The driver of one worker: claims, finishes, and the idle block on the marker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        o = worker.options
        self.outage = Outage(f"worker {worker.id} of queue {worker.queue_name}", o.reconnect_max_s)
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
        self._blocker: asyncio.Task[Any] | None = None
        self.block_client: Any = None
        k = worker.keys
        self._claim_keys = [k.meta, k.wait, k.delayed, k.active, k.events, k.marker, k.limiter]
        self._fail_keys = [k.active, k.wait, k.delayed, k.failed, k.meta, k.events, k.marker]
        self._complete_keys = [k.active, k.completed, k.events]

    def open(self) -> None:
        self.block_client = self._new_block_client()

    def _new_block_client(self) -> Any:
        w = self.worker
        timeout = w.options.block_timeout_s + _BLOCK_SOCKET_MARGIN_S
        if w._settings is not None:
            return create_client(w._settings, socket_timeout_s=timeout)
        pool = w.store.client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        kwargs["socket_timeout"] = timeout
        return Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs))

    def poke(self) -> None:
        """Make the driver claim once more (a wake-up may have been lost)."""
        self._queue_empty = False
        self.worker._wake.set()

    @property
    def inflight(self) -> set[asyncio.Task[None]]:
        return self._inflight

    async def interrupt_block(self, flush_s: float) -> None:
        """Cancel a blocking pop in progress (close). The pop may have taken a marker on
        the server whose reply we dropped: put a wake-up back so another worker claims
        (at worst a spare claim)."""
        blocker = self._blocker
        if blocker is None:
            return
        blocker.cancel()
        await asyncio.gather(blocker, return_exceptions=True)
        if blocker.cancelled():
            w = self.worker
            with contextlib.suppress(*REDIS_ERRORS, TimeoutError):
                await asyncio.wait_for(w.store.client.zadd(w.keys.marker, {"w": 0}), flush_s)

    async def aclose(self) -> None:
        if self.block_client is not None:
            await self.block_client.aclose()

    # -- the driver ---------------------------------------------------------------

    def _free(self) -> int:
        w = self.worker
        return w.options.concurrency - w._busy

    def _claim_count(self) -> int:
        """Slots to claim now: free slots not already asked for by an exchange in flight,
        at most ``fetch_batch`` and, so that two exchanges can overlap, at most
        ``concurrency / depth``."""
        w = self.worker
        if w._closing or self._queue_empty or time.monotonic() < self._limited_until:
            return 0
        free = self._free() - self._reserved
        return max(0, min(free, w.options.fetch_batch, self._per_exchange))

    async def run(self) -> None:
        w = self.worker
        while True:
            w._wake.clear()
            if w._closing and not w._pending and not self._inflight and not w.handling():
                return
            backoff_s = self._backoff_until - time.monotonic()
            if len(self._inflight) < self._depth and backoff_s <= 0:
                count = self._claim_count()
                if w._pending or count:
                    self._reserved += count
                    finishes, w._pending = w._pending, []
                    task = asyncio.create_task(self._exchange(finishes, count))
                    self._inflight.add(task)
                    task.add_done_callback(self._exchanged)
                    continue
            if self._inflight:
                await w._wake.wait()
            elif backoff_s > 0:
                await asyncio.sleep(backoff_s)
            else:
                await self._idle()

    def _exchanged(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.worker._wake.set()

    async def _exchange(self, finishes: list[Finish], count: int) -> None:
        """Send pending finishes and (maybe) a claim for ``count`` slots in one pipeline.
        On a Redis error, sets when the driver may try again."""
        try:
            backoff_s = await self._send(finishes, count)
        finally:
            self._reserved -= count
        if backoff_s is not None:
            self._backoff_until = max(self._backoff_until, time.monotonic() + backoff_s)

    def _claim_args(self, count: int) -> list[str | int]:
        w = self.worker
        o = w.options
        rate = o.rate_limit
        return [
            w.keys.job_prefix,
            w.id,
            count,
            o.lease_ms,
            w.store.max_events,
            rate.max if rate else 0,
            rate.duration_ms if rate else 0,
            o.promote_batch,
        ]

    async def _send(self, finishes: list[Finish], count: int) -> float | None:
        w = self.worker
        scripts = w.store.scripts
        o = w.options
        completes = [f for f in finishes if f.complete]
        fails = [f for f in finishes if not f.complete]
        chunks = [
            completes[i : i + _COMPLETE_CHUNK] for i in range(0, len(completes), _COMPLETE_CHUNK)
        ]
        k = w.keys
        try:
            async with w.store.client.pipeline(transaction=False) as pipe:
                for chunk in chunks:
                    args: list[str | int] = [k.job_prefix, w.store.max_events, o.retention_batch]
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
        except REDIS_ERRORS as exc:
            backoff_s = self.outage.failed(exc)
            if isinstance(exc, ResponseError) and not isinstance(exc, ReadOnlyError):
                # A script error will not heal by retrying: leave these jobs to stalled
                # recovery rather than loop on them.
                for f in finishes:
                    w._attempts.pop((f.attempt.job.id, f.attempt.token), None)
            else:
                w._pending = finishes + w._pending
            return backoff_s
        self.outage.ok()
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
        w = self.worker
        w._wake.clear()
        now = time.monotonic()
        if w._closing or self._free() == 0:
            due = None if w._closing else self._next_due
            if due is None:
                await w._wake.wait()
            else:
                await self._hand_off_due(due - now)
            return
        if self._limited_until > now:
            await self._sleep_or_wake(self._limited_until - now)
            return
        if self._blocker is None:
            timeout = w.options.block_timeout_s
            if self._next_due is not None:
                timeout = min(timeout, max(self._next_due - now, 0.0))
            # Warm (the last pop returned a marker): the claim rides behind the pop on the
            # blocking connection, so a wake-up costs no second round trip. After a
            # timeout, a bare pop (one command per timeout while idle).
            count = min(self._free(), w.options.fetch_batch, self._per_exchange)
            count = count if self._warm else 0
            self._block_count = count
            self._reserved += count
            # BZPOPMIN treats 0 as "forever": never ask for less than 10 ms.
            self._blocker = asyncio.create_task(self._block(max(timeout, 0.01), count))
        waker = asyncio.create_task(w._wake.wait())
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
            await asyncio.sleep(self.outage.failed(exc))
            return
        popped, claimed = blocker.result()
        self._warm = popped is not None  # a timeout: idle, bare pops from now on
        if claimed is not None:
            self.outage.ok()
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
        w = self.worker
        marker = [w.keys.marker]
        if not count:
            return await self.block_client.bzpopmin(marker, timeout_s), None
        async with self.block_client.pipeline(transaction=False) as pipe:
            pipe.bzpopmin(marker, timeout_s)
            await w.store.scripts.move_to_active(
                self._claim_keys, self._claim_args(count), client=pipe
            )
            popped, claimed = await execute(pipe)
        return popped, claimed

    async def _hand_off_due(self, delay_s: float) -> None:
        """Every slot is busy and this worker knows a delayed job falls due: if it is still
        full then, wake a blocked worker of the queue (it claims, which promotes the job),
        since the others may not know the due time (a `d` marker wakes one worker)."""
        w = self.worker
        await self._sleep_or_wake(max(delay_s, 0.0))
        if w._wake.is_set() or w._closing or self._free() > 0:
            return
        try:
            await w.store.client.zadd(w.keys.marker, {"d": 0})
        except REDIS_ERRORS as exc:
            await asyncio.sleep(self.outage.failed(exc))
            return
        self._next_due = None  # learnt again at this worker's next claim

    async def _sleep_or_wake(self, delay_s: float) -> None:
        w = self.worker
        w._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(w._wake.wait(), delay_s)

    # -- replies ------------------------------------------------------------------

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
            if tracing.ENABLED:
                attributes = {
                    "engine.queue": self.worker.queue_name,
                    "engine.claim.jobs": len(jobs),
                }
                with tracing.span(f"claim {self.worker.queue_name}", attributes):
                    pass  # marks the claim in the trace; each job's own span follows
        for raw in jobs:
            self.worker._runner.start(raw, int(now_ms))

    def _lease_lost(self, f: Finish) -> None:
        logger.warning(
            "Job %s of queue %s: %s refused, lease lost (the job was recovered elsewhere)",
            f.attempt.job.id,
            self.worker.queue_name,
            "completion" if f.complete else "failure",
        )

    def _completed(self, f: Finish, code: int, duration_ms: int) -> None:
        w = self.worker
        attempt = f.attempt
        w._attempts.pop((attempt.job.id, attempt.token), None)
        if code == 1:
            logger.info(
                "Job %s completed in queue %s (%d ms)", attempt.job.id, w.queue_name, duration_ms
            )
        elif code == -2:
            self._lease_lost(f)
        # 0: this very call already ran (a retried pipeline)

    def _failed(self, f: Finish, result: Any) -> None:
        w = self.worker
        attempt = f.attempt
        job = attempt.job
        w._attempts.pop((job.id, attempt.token), None)
        if isinstance(result, int):
            if result == -2:
                self._lease_lost(f)
            return  # 0: this very call already ran (a retried pipeline)
        if int(result[1]):
            logger.info(
                "Job %s failed in queue %s (attempt %d of %d): %s; retrying in %d ms",
                job.id,
                w.queue_name,
                int(result[2]),
                job.opts.attempts,
                f.reason,
                f.delay_ms,
            )
            if f.delay_ms > 0:
                due = time.monotonic() + f.delay_ms / 1000
                self._next_due = due if self._next_due is None else min(self._next_due, due)
        else:
            logger.warning("Job %s failed in queue %s: %s", job.id, w.queue_name, f.reason)

"""The claim/finish exchange: the driver task that talks to Redis for a worker's jobs.

It sends the finishes of ended jobs and the claim for the free slots in ONE pipeline, so
a busy worker spends one round trip per job or less. It blocks on the queue's ``marker``
(BZPOPMIN, on a connection of its own) only when a claim came back short. Due times (a
delayed job or retry, an unconfirmed claim's deadline) are kept by a local timer that
triggers a claim on the normal connection, never by the blocking pop's timeout (Redis
resolves those at its ``hz``: up to 100 ms late). See docs/ARCHITECTURE.md, "Worker".

A claim whose outcome is unknown (the connection failed after sending it) is resent with
the same request id: if Redis ran the first copy, the resend returns its jobs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from .. import tracing
from ..connection import create_client
from ..keys import new_request_id
from ..scripts import execute
from .attempt import Finish
from .finishing import Finishing
from .outage import REDIS_ERRORS, Outage, Verdict, classify

if TYPE_CHECKING:
    from .core import Worker

logger = logging.getLogger("engine.worker")

# A blocking connection must outlive its longest block, or the client times it out.
_BLOCK_SOCKET_MARGIN_S = 5.0
# From this concurrency on, the driver keeps two exchanges in flight (each claiming half
# the slots): the next one goes out while Redis runs the last. Below it, halving the
# batches costs more than the overlap saves (measured: c=10 -20%, c=50 +30%).
_OVERLAP_FROM = 32


class Exchange:
    """The driver of one worker: claims, finishes, and the idle block on the marker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        o = worker.options
        self.outage = Outage(f"worker {worker.id} of queue {worker.queue_name}", o.reconnect_max_s)
        self.finishing = Finishing(worker)
        self._queue_empty = False
        self._limited_until = 0.0
        # The next due time this worker knows of (monotonic s), and the timer that wakes
        # the driver then.
        self._next_due: float | None = None
        self._due_timer: asyncio.TimerHandle | None = None
        # Redis clock minus local monotonic clock (ms): each claim reply gives a sample
        # low by the reply's travel time; the highest recent one is the closest (and a due
        # time converted with it is never early).
        self._clock_samples: collections.deque[float] = collections.deque(maxlen=32)
        # Exchanges (pipelines) in flight, at most ``_depth``; slots their claims asked for.
        self._inflight: set[asyncio.Task[None]] = set()
        self._reserved = 0
        self._backoff_until = 0.0
        # Claims whose outcome is unknown: (request id, count), resent first.
        self._doubts: list[tuple[str, int]] = []
        # An unexpected error of an exchange task, raised by the driver (the supervisor).
        self._failure: BaseException | None = None
        # Whether the next blocking pop carries a claim, and how many slots it asked for.
        self._warm = False
        self._block_count = 0
        self._block_request = ""
        self._depth = 2 if o.concurrency >= _OVERLAP_FROM else 1
        self._per_exchange = max(1, -(-o.concurrency // self._depth))
        self._blocker: asyncio.Task[Any] | None = None
        self.block_client: Any = None

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
        count, request_id = self._block_count, self._block_request
        blocker.cancel()
        await asyncio.gather(blocker, return_exceptions=True)
        if blocker.cancelled():
            w = self.worker
            if count:
                self._doubts.append((request_id, count))
            with contextlib.suppress(*REDIS_ERRORS, TimeoutError):
                await asyncio.wait_for(w.store.client.zadd(w.keys.marker, {"w": 0}), flush_s)

    async def hand_back_doubts(self) -> None:
        """Closing: a claim whose outcome is unknown (its pop cancelled, its reply lost)
        may have run. Ask for its record without claiming anything new (count 0: a resend
        that finds no record claims nothing) and hand whatever it took back at once."""
        w = self.worker
        doubts, self._doubts = self._doubts, []
        pairs: list[tuple[str, str]] = []
        for request_id, _count in doubts:
            try:
                reply = await self._claim(0, request_id, None)
            except REDIS_ERRORS:
                continue  # its jobs come back after their claim deadline
            pairs += [(str(job[0]), str(job[1])) for job in reply[4]]
        if pairs:
            released = await w._calls.release(pairs)
            logger.info(
                "Worker %s closing: %d job(s) of queue %s claimed as it closed handed back",
                w.id,
                len(released),
                w.queue_name,
            )

    async def aclose(self) -> None:
        if self._due_timer is not None:
            self._due_timer.cancel()
        if self.block_client is not None:
            await self.block_client.aclose()

    # -- due times ------------------------------------------------------------------

    def learn_due(self, due: float | None, *, replace: bool = False) -> None:
        """A due time (monotonic s): the earliest one known wakes the driver to claim."""
        if not replace and self._next_due is not None:
            due = self._next_due if due is None else min(due, self._next_due)
        self._next_due = due
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None
        if due is not None:
            loop = asyncio.get_running_loop()
            self._due_timer = loop.call_at(loop.time() + max(due - time.monotonic(), 0), self._due)

    def _due(self) -> None:
        self._due_timer = None
        self._next_due = None  # learnt again from the claim it triggers
        self._queue_empty = False
        if self._blocker is not None and self._block_count:
            # A warm pop holds the free slots: cancel it (its claim, if Redis ran it, is
            # resent by id and returns its jobs) so the claim goes out now.
            self._blocker.cancel()
        self.worker._wake.set()

    def _redis_to_local(self, redis_ms: int) -> float | None:
        if not self._clock_samples:
            return None
        return (redis_ms - max(self._clock_samples)) / 1000

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
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
            if w._closing and not w._pending and not self._inflight and not w.handling():
                return
            backoff_s = self._backoff_until - time.monotonic()
            if len(self._inflight) < self._depth and backoff_s <= 0:
                if self._doubts and not w._closing:
                    # A claim that may have run: resend it (same id) before anything new.
                    request_id, count = self._doubts.pop(0)
                else:
                    request_id, count = new_request_id(), self._claim_count()
                if w._pending or count:
                    self._reserved += count
                    finishes, w._pending = w._pending, []
                    task = asyncio.create_task(self._exchange(finishes, count, request_id))
                    self._inflight.add(task)
                    task.add_done_callback(self._exchanged)
                    continue
            if self._inflight:
                await w._wake.wait()
            elif backoff_s > 0:
                await self._sleep_or_wake(backoff_s)
            else:
                await self._idle()

    def _exchanged(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Not a Redis error (those are handled): a bug. The driver raises it, so the
            # supervisor logs, counts and restarts it with backoff.
            self._failure = self._failure or task.exception()
        self.worker._wake.set()

    async def _exchange(self, finishes: list[Finish], count: int, request_id: str) -> None:
        """Send pending finishes and (maybe) a claim for ``count`` slots in one pipeline.
        On a Redis error, sets when the driver may try again."""
        try:
            backoff_s = await self._send(finishes, count, request_id)
        except Exception:
            # Whatever went wrong, nothing is lost: the finishes are kept (and resent), the
            # claim may have run (resent by id).
            self.finishing.requeue(
                [f for f in finishes if f not in self.worker._pending], maybe_applied=True
            )
            if count:
                self._doubts.append((request_id, count))
            raise
        finally:
            self._reserved -= count
        if backoff_s is not None:
            self._backoff_until = max(self._backoff_until, time.monotonic() + backoff_s)

    def _claim(self, count: int, request_id: str, pipe: Any) -> Any:
        w = self.worker
        o = w.options
        rate = o.rate_limit
        return w._calls.claim(
            worker_id=w.id,
            request_id=request_id,
            count=count,
            claim_ms=o.claim_ms,
            rate=(rate.max, rate.duration_ms) if rate else (0, 0),
            promote_batch=o.promote_batch,
            client=pipe,
        )

    async def _send(self, finishes: list[Finish], count: int, request_id: str) -> float | None:
        w = self.worker
        try:
            async with w.store.client.pipeline(transaction=False) as pipe:
                groups = await self.finishing.queue(pipe, finishes)
                if count:
                    await self._claim(count, request_id, pipe)
                results = await execute(pipe, raise_on_error=False)
        except REDIS_ERRORS as exc:
            # The pipeline as a whole: nothing is known of any of its calls.
            maybe = classify(exc) is not Verdict.REFUSED
            self.finishing.requeue(finishes, maybe_applied=maybe)
            if count:
                self._doubts.append((request_id, count))
            return self.outage.failed(exc)
        failure: Exception | None = None
        for group, result in zip(groups, results, strict=False):
            if self.finishing.settle(group, result) is not None:
                failure = failure or result
        if count:
            claimed = results[-1]
            if isinstance(claimed, Exception):
                failure = failure or claimed
                if classify(claimed) is not Verdict.BROKEN:
                    self._doubts.append((request_id, count))
            else:
                self._claimed(claimed, count)
        if failure is not None:
            return self.outage.failed(failure)
        self.outage.ok()
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
            # Warm (the last pop returned a marker): the claim rides behind the pop on the
            # blocking connection, so a wake-up costs no second round trip. After a
            # timeout, or with a due time coming before the pop's timeout (the timer's
            # claim then needs the slots), a bare pop.
            timeout = w.options.block_timeout_s
            due_soon = self._next_due is not None and self._next_due - now < timeout
            count = min(self._free(), w.options.fetch_batch, self._per_exchange)
            count = count if self._warm and not due_soon else 0
            self._block_count = count
            self._block_request = new_request_id() if count else ""
            self._reserved += count
            self._blocker = asyncio.create_task(self._block(timeout, count, self._block_request))
        waker = asyncio.create_task(w._wake.wait())
        await asyncio.wait([self._blocker, waker], return_when=asyncio.FIRST_COMPLETED)
        waker.cancel()
        if not self._blocker.done():
            return  # a finish to send, a due time, a re-check; keep blocking afterwards
        blocker, self._blocker = self._blocker, None
        count, self._block_count = self._block_count, 0
        self._reserved -= count
        if blocker.cancelled():
            self._queue_empty = False
            if count:
                self._doubts.append((self._block_request, count))
            return
        exc = blocker.exception()
        if exc is not None:
            # Whatever the blocking call raised (redis-py may raise odd errors for a
            # connection torn down mid-handshake), the worker backs off, never dies. A
            # claim that rode the pop may have run: resend it.
            self._queue_empty = False
            self._warm = False
            if count and classify(exc) is not Verdict.BROKEN:
                self._doubts.append((self._block_request, count))
            await self._sleep_or_wake(self.outage.failed(exc))
            return
        popped, claimed, claim_due = blocker.result()
        self._warm = popped is not None  # a timeout: idle, bare pops from now on
        if claimed is not None:
            if isinstance(claimed, Exception):
                self._queue_empty = False
                if classify(claimed) is not Verdict.BROKEN:
                    self._doubts.append((self._block_request, count))
                await self._sleep_or_wake(self.outage.failed(claimed))
                return
            self.outage.ok()
            self._queue_empty = False
            self._claimed(claimed, count)  # short: the queue is empty, block again
            return
        if claim_due:
            # Another worker's claim awaits its confirmation: if its deadline passes
            # unconfirmed (that worker froze or died), the claim that hands it back is ours.
            local = self._redis_to_local(int(float(claim_due[0][1])))
            if local is not None:
                self.learn_due(local)
        if popped is not None:
            # A marker (jobs ready, a delayed job announced, a resume): claim. A plain
            # timeout costs no claim: block again.
            self._queue_empty = False

    async def _block(self, timeout_s: float, count: int, request_id: str) -> tuple[Any, Any, Any]:
        """BZPOPMIN on the marker, then, on the same connection (one pipeline: Redis runs
        it as soon as the pop returns), with ``count`` the claim, else a look at the
        earliest unconfirmed claim's deadline."""
        w = self.worker
        async with self.block_client.pipeline(transaction=False) as pipe:
            pipe.bzpopmin([w.keys.marker], timeout_s)
            if count:
                await self._claim(count, request_id, pipe)
                popped, claimed = await execute(pipe, raise_on_error=False)
                if isinstance(popped, Exception):
                    raise popped
                return popped, claimed, None
            pipe.zrange(w.keys.claims, 0, 0, withscores=True)
            popped, claim_due = await execute(pipe)
        return popped, None, claim_due

    async def _hand_off_due(self, delay_s: float) -> None:
        """Every slot is busy and this worker knows a due time: if it is still full then,
        wake a blocked worker of the queue (it claims, which promotes the job), since the
        others may not know the due time (a `d` marker wakes one worker)."""
        w = self.worker
        await self._sleep_or_wake(max(delay_s, 0.0))
        if w._wake.is_set() or w._closing or self._free() > 0:
            return
        try:
            await w.store.client.zadd(w.keys.marker, {"d": 0})
        except REDIS_ERRORS as exc:
            await self._sleep_or_wake(self.outage.failed(exc))
            return
        self.learn_due(None, replace=True)  # learnt again at this worker's next claim

    async def _sleep_or_wake(self, delay_s: float) -> None:
        w = self.worker
        w._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(w._wake.wait(), delay_s)

    # -- replies ------------------------------------------------------------------

    def _claimed(self, result: list[Any], asked: int) -> None:
        now_ms, _paused, limited_ms, next_due, jobs, ready = result
        mono = time.monotonic()
        self._clock_samples.append(int(now_ms) - mono * 1000)
        # The reply knows every due time of the queue: it replaces what this worker knew.
        self.learn_due(
            None if int(next_due) < 0 else self._redis_to_local(int(next_due)), replace=True
        )
        if int(limited_ms) > 0:
            self._limited_until = mono + int(limited_ms) / 1000
        if len(jobs) < asked and not int(ready):
            self._queue_empty = True
        if jobs:
            self._warm = True
            if tracing.active():
                attributes = {
                    "engine.queue": self.worker.queue_name,
                    "engine.claim.jobs": len(jobs),
                }
                with tracing.span(f"claim {self.worker.queue_name}", attributes):
                    pass  # marks the claim in the trace; each job's own span follows
        if jobs:
            self.worker._leases.claimed(mono)
        runner = self.worker._runner
        for raw in jobs:
            runner.start(raw, int(now_ms), mono)

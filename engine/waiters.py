"""Waiting for a job's outcome: ``await job.wait()`` / ``queue.add_and_wait()``.

Every waiter of one manager is served by ONE event feed (``engine/events.py``), started
with the first wait: thousands of concurrent waiters cost one stream reader, never a poll
per waiter. A waiter registers before the feed's origin is fixed and reads the job's state
only then, so an outcome recorded at any moment is seen either by that read or by the
feed (seen twice at worst: the first one wins).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from .errors import JobFailed, JobNotFound, WaitTimeout
from .events import Event, EventFeed

if TYPE_CHECKING:
    from .manager import QueueManager
    from .queue import Queue

logger = logging.getLogger("engine.waiters")

# Events that end a wait: a job's last failure, its completion, its removal.
_FINAL = frozenset({"completed", "failed", "removed"})
# Jobs whose state one pipeline reads when waits begin (3 commands each).
_CHECK_CHUNK = 500


class ResultWaiters:
    """Pending ``wait()`` calls of one manager, resolved from its queues' events."""

    def __init__(self, manager: QueueManager) -> None:
        self._manager = manager
        self._feed: EventFeed | None = None
        self._pending: dict[tuple[str, str], list[asyncio.Future[Any]]] = {}
        self._to_check: list[tuple[Queue, str, asyncio.Future[Any]]] = []
        self._checker: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Calls waiting now."""
        return sum(len(f) for f in self._pending.values())

    @property
    def checking(self) -> bool:
        """Whether the states of newly begun waits are still being read."""
        return bool(self._to_check) or (self._checker is not None and not self._checker.done())

    async def wait(self, queue: Queue, job_id: str, timeout_s: float | None = None) -> Any:
        """The return value of job ``job_id`` of ``queue`` once it completes.

        Raises :class:`JobFailed` (with the reason) if it fails for good,
        :class:`JobNotFound` if it does not exist or is removed, :class:`WaitTimeout`
        after ``timeout_s`` (the job goes on; wait again to keep waiting)."""
        if timeout_s is not None and (
            isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s < 0
        ):
            raise ValueError(f"timeout_s must be a non-negative number or None, got {timeout_s!r}")
        key = (queue.name, str(job_id))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append(future)
        self._to_check.append((queue, key[1], future))
        self._schedule_check()
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            raise WaitTimeout(
                f"job {key[1]} of {queue.name!r} did not finish within {timeout_s} s"
            ) from None
        finally:
            waiting = self._pending.get(key, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._pending.pop(key, None)

    def _schedule_check(self) -> None:
        if self._checker is None or self._checker.done():
            self._checker = asyncio.create_task(self._check_states())

    async def _check_states(self) -> None:
        """Read the state of every job whose wait began since the last check: pipelined,
        in chunks, after the feed's origin is fixed (so nothing falls between the two).
        Waits started together share the round trips."""
        await asyncio.sleep(0)  # gather the waits made in this loop iteration
        while self._to_check:
            batch, self._to_check = self._to_check[:_CHECK_CHUNK], self._to_check[_CHECK_CHUNK:]
            live = [(q, job_id, f) for q, job_id, f in batch if not f.done()]
            if not live:
                continue
            try:
                await self._start_feed()
                async with self._manager.client.pipeline(transaction=False) as pipe:
                    for q, job_id, _ in live:
                        k = q.keys
                        pipe.hmget(k.job(job_id), "ts", "rv", "fr")
                        pipe.zscore(k.completed, job_id)
                        pipe.zscore(k.failed, job_id)
                    replies = await pipe.execute()
            except Exception as exc:  # each waiter sees why; later waits try again
                for _, _, future in live:
                    _settle(future, exc=exc)
                continue
            for i, (q, job_id, future) in enumerate(live):
                (ts, rv, reason), completed, failed = replies[3 * i : 3 * i + 3]
                if ts is None:
                    _settle(future, exc=JobNotFound(f"job {job_id} not found in {q.name!r}"))
                elif completed is not None:
                    _settle(future, value=_loads(rv or ""))
                elif failed is not None:
                    _settle(future, exc=JobFailed(job_id, reason or ""))

    async def _start_feed(self) -> None:
        if self._feed is None:
            self._feed = EventFeed(self._manager)
            self._feed.subscribe(self._on_events)
        if not self._feed.running:
            await self._feed.start()

    def _on_events(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.kind not in _FINAL:
                continue
            key = (event.queue, event.fields.get("jobId", ""))
            futures = self._pending.get(key)
            if not futures:
                continue
            if event.kind == "failed":
                error = JobFailed(key[1], event.fields.get("failedReason", ""))
                for future in futures:
                    _settle(future, exc=error)
            elif event.kind == "removed":
                for future in futures:
                    _settle(future, exc=JobNotFound(f"job {key[1]} was removed"))
            elif "returnvalue" in event.fields:
                value = _loads(event.fields["returnvalue"])
                for future in futures:
                    _settle(future, value=value)
            else:
                # No return value in the event: read it, batched with the state checks.
                queue = self._manager.queues.get(key[0])
                if queue is not None:
                    self._to_check += [(queue, key[1], future) for future in futures]
                    self._schedule_check()

    async def close(self) -> None:
        """Stop the feed; calls still waiting get ``WaitTimeout``-free cancellation."""
        for futures in list(self._pending.values()):
            for future in futures:
                future.cancel()
        if self._checker is not None:
            self._checker.cancel()
        if self._feed is not None:
            await self._feed.stop()


def _settle(
    future: asyncio.Future[Any], *, value: Any = None, exc: BaseException | None = None
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


def _loads(raw: str) -> Any:
    return None if raw == "" else orjson.loads(raw)


__all__ = ["ResultWaiters"]

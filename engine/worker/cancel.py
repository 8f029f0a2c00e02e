"""Stopping a cancelled job's handler on whichever worker runs it.

``cancel_job`` (``engine/cancel.py``) fails a running job in Redis at once, records the
cancelled attempt's token in the job hash (``cxl``) and PUBLISHes ``[job id, token]`` on
the queue's cancel channel. Two ways bring it to the worker holding that attempt:

1. :class:`CancelNotices`: ONE pub/sub connection per manager, subscribed to the cancel
   channel of every queue the manager runs workers for, routes each message to the
   worker holding that (job id, token). Milliseconds. Idle cost: a pending read, and
   one PING per ``_READ_S`` (the client's health check, ``health_check_interval_s``, as
   the read returns empty; measured: 2 in 65 s idle).
2. The lease keeper: the next renewal reports the attempt lost with ``cancelled`` = 1
   (``extend_leases``), at most ``renew_interval_ms`` later. This is the fallback for a
   message lost (a reconnect, a killed connection) and the only way on a Redis Cluster
   when the client has no asyncio pub/sub (redis-py < 8).

Either way :func:`stop_cancelled` ends the attempt at once and for good: no finish is
sent (Redis has the outcome already), a coroutine handler is cancelled, a process-pool
child call is stopped (``engine/children.py``), and a thread handler, which cannot be
stopped, runs on with its outcome discarded and its slot taken until it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import NoPermissionError

from .outage import REDIS_ERRORS, Outage

if TYPE_CHECKING:
    from .attempt import Attempt
    from .core import Worker

logger = logging.getLogger("engine.worker")

# A pending read returns this often when nothing comes (no command is sent for it).
_READ_S = 30.0
# How long watch() waits for the channel's subscription to be confirmed.
_SUBSCRIBE_BOUND_S = 2.0
_CLOSE_S = 1.0
_DENIED_RETRY_S = 60.0  # at most


def stop_cancelled(worker: Worker, attempt: Attempt, how: str) -> None:
    """End an attempt that ``cancel_job`` failed: stop its handler, send no finish."""
    if attempt.cancelled:
        return
    attempt.cancelled = True
    worker._attempts.pop((attempt.job.id, attempt.token), None)
    kind = worker._runner.handlers.kind
    if attempt.call is not None:
        attempt.call.interrupt()
    if attempt.task is not None and not attempt.task.done():
        attempt.task.cancel()
    logger.log(
        logging.WARNING if kind == "thread" else logging.INFO,
        "Job %s of queue %s cancelled (%s): its %s handler is stopped%s",
        attempt.job.id,
        worker.queue_name,
        how,
        kind,
        "; a thread cannot be stopped: it runs on, its outcome discarded"
        if kind == "thread"
        else "",
    )


def take_cancelled(worker: Worker, lost: list[list[str]]) -> list[list[str]]:
    """Stop the attempts a lease renewal reports cancelled (``extend_leases``: {id, token,
    "cancelled"}); returns the other entries."""
    rest = []
    for entry in lost:
        if len(entry) > 2 and entry[2] == "cancelled":
            attempt = worker._attempts.get((str(entry[0]), str(entry[1])))
            if attempt is not None:
                stop_cancelled(worker, attempt, "seen at lease renewal")
        else:
            rest.append(entry)
    return rest


class CancelNotices:
    """The one pub/sub subscriber of a manager's workers (see the module doc)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        # redis-py's asyncio Cluster client has pub/sub from 8.0 on; without it, renewal only.
        self.supported = callable(getattr(client, "pubsub", None))
        self._workers: dict[str, list[Worker]] = {}
        self._subscribed: dict[str, asyncio.Event] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._outage = Outage("cancel notices", 5.0)
        self._denied = 0  # consecutive refusals (no channel rights)

    @property
    def channels(self) -> list[str]:
        return sorted(self._workers)

    def subscribed(self, channel: str) -> bool:
        event = self._subscribed.get(channel)
        return event is not None and event.is_set()

    async def watch(self, worker: Worker) -> None:
        """Route the cancels of ``worker``'s queue to it. Returns once the channel is
        subscribed (or after ``_SUBSCRIBE_BOUND_S``: Redis may be down; the lease keeper
        covers the gap)."""
        channel = worker.keys.cancel_channel
        alive = [w for w in self._workers.get(channel, []) if not w._closed]
        self._workers[channel] = [*alive, worker]
        if not self.supported:
            return
        event = self._subscribed.setdefault(channel, asyncio.Event())
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), _SUBSCRIBE_BOUND_S)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            pubsub = self._client.pubsub()
            delay = 0.0
            try:
                await self._listen(pubsub)
            except NoPermissionError as exc:
                # An ACL without channel rights: say so once, try again ever more rarely.
                if not self._denied:
                    logger.warning(
                        "Cancel notices unavailable: the Redis user may not subscribe to "
                        "the cancel channels (%s; grant +@pubsub and &<prefix>:*). Cancels "
                        "reach workers at their next lease renewal instead",
                        exc,
                    )
                self._denied += 1
                delay = min(_DENIED_RETRY_S, 0.1 * 2.0**self._denied)
            except Exception as exc:  # never ends: back off, subscribe again
                if not isinstance(exc, REDIS_ERRORS):
                    logger.exception("Cancel notices: unexpected error; subscribing again")
                delay = self._outage.failed(exc)
            finally:
                for event in self._subscribed.values():
                    event.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), _CLOSE_S)
            # Anything published until the new subscription is lost: the lease keeper
            # reports those cancels at its next renewal.
            await asyncio.sleep(delay)

    async def _listen(self, pubsub: Any) -> None:
        done: set[str] = set()
        reader: asyncio.Future[Any] | None = None
        try:
            while True:
                self._changed.clear()
                new = [c for c in self._subscribed if c not in done]
                if new:
                    # Written while the reader waits on the same connection: the replies
                    # come back to it as `subscribe` messages.
                    await pubsub.subscribe(*new)
                    done.update(new)
                if reader is None:
                    reader = asyncio.ensure_future(pubsub.get_message(timeout=_READ_S))
                changed = asyncio.ensure_future(self._changed.wait())
                await asyncio.wait({reader, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if reader.done():
                    message, reader = reader.result(), None
                    if message is not None:
                        self._on_message(message)
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind, channel = message.get("type"), str(message.get("channel", ""))
        if kind == "subscribe":
            self._outage.ok()
            self._denied = 0
            event = self._subscribed.get(channel)
            if event is not None:
                event.set()
            return
        if kind != "message":
            return
        try:
            job_id, token = orjson.loads(message["data"])
        except (ValueError, TypeError):
            logger.warning("Unreadable cancel notice on %s ignored", channel)
            return
        for worker in self._workers.get(channel, []):
            attempt = worker._attempts.get((str(job_id), str(token)))
            if attempt is not None:
                stop_cancelled(worker, attempt, "notified")

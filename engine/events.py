"""The event feed: one reader that tails the ``events`` stream of every queue of a manager.

The Lua scripts write each lifecycle event in the same atomic step as the transition, so
the streams are the engine's flow record. :class:`EventFeed` tails them with one blocking
``XREAD`` from the last id it saw (an idle engine costs one command per block timeout) and
hands each batch to its listeners: metrics, alerts and the dashboard hub in the service,
and the result waiters of ``job.wait()`` (``engine/waiters.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from .tasks import stop_task

if TYPE_CHECKING:
    from .manager import QueueManager

logger = logging.getLogger("engine.events")

_MAX_SEQ = 2**64 - 1  # the largest sequence part of a stream id


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a queue's events stream; ``ts_ms`` is Redis time (from the id)."""

    queue: str
    id: str
    fields: Mapping[str, str]

    @property
    def kind(self) -> str:
        return self.fields.get("event", "")

    @property
    def ts_ms(self) -> int:
        return int(self.id.split("-", 1)[0])

    def int_field(self, name: str) -> int | None:
        raw = self.fields.get(name)
        try:
            return int(raw) if raw else None
        except ValueError:
            return None


Listener = Callable[[Sequence[Event]], None]


class EventFeed:
    """Tails the events stream of every queue of a manager and fans batches out.

    Listeners are plain functions called on the event loop; they must not block, and an
    exception in one is logged without stopping the feed or the others. Queues created
    after start are picked up on the next read.
    """

    def __init__(
        self,
        manager: QueueManager,
        *,
        block_ms: int = 1000,
        batch: int = 500,
        poll_interval_s: float = 0.5,
        max_backoff_s: float = 5.0,
    ) -> None:
        if block_ms < 1 or batch < 1 or poll_interval_s <= 0 or max_backoff_s <= 0:
            raise ValueError("block_ms, batch, poll_interval_s and max_backoff_s must be positive")
        self.manager = manager
        # A blocked read must return before the socket timeout would call it a failure.
        self.block_ms = max(1, min(block_ms, int(manager.settings.socket_timeout_s * 500)))
        self.batch = batch
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.redis_ok = True
        self._origin: str | None = None  # stream id of the feed's start (Redis time)
        self._last: dict[str, str] = {}  # stream key -> last id seen
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every new batch; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        with contextlib.suppress(RedisError, OSError):
            await self._track_new_queues()  # fixes the origin before the first slow read
        self._task = asyncio.create_task(self._run(), name="engine-event-feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _track_new_queues(self) -> dict[str, str]:
        """Stream key -> queue name for every queue of the manager.

        The feed delivers what happened after it first reached Redis (its origin, in Redis
        time), for every queue, including queues created later: a queue registered a moment
        after its first jobs ran still has those jobs counted, and history before the origin
        is never replayed. Queues known at the origin start exactly at their newest id.
        """
        streams = {q.keys.events: name for name, q in self.manager.queues.items()}
        if self._origin is None:
            sec, usec = await self.manager.client.time()
            now_ms = int(sec) * 1000 + int(usec) // 1000
            # Everything from the start millisecond on: the last id of the one before.
            self._origin = f"{now_ms - 1}-{_MAX_SEQ}"
            keys = list(streams)
            async with self.manager.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.xrevrange(key, count=1)
                tails = await pipe.execute() if keys else []
            for key, tail in zip(keys, tails, strict=True):
                self._last[key] = tail[0][0] if tail else self._origin
        for key in streams:
            self._last.setdefault(key, self._origin)
        return streams

    async def read_once(self, block: bool = True) -> int:
        """One read of every stream; returns how many events were delivered."""
        streams = await self._track_new_queues()
        if not streams:
            if block:
                await asyncio.sleep(self.poll_interval_s)
            return 0
        client = self.manager.client
        positions = {key: self._last[key] for key in streams}
        if isinstance(client, RedisCluster):
            # Streams of different queues live in different slots: one XREAD each,
            # pipelined (the cluster client groups them per node), never blocking.
            async with client.pipeline(transaction=False) as pipe:
                for key, last in positions.items():
                    pipe.xread({key: last}, count=self.batch)
                replies = [r for reply in await pipe.execute() for r in (reply or [])]
            if block and not replies:
                await asyncio.sleep(self.poll_interval_s)
        else:
            replies = await client.xread(
                positions, count=self.batch, block=self.block_ms if block else None
            )
            replies = replies or []
        events: list[Event] = []
        for key, entries in replies:
            queue = streams[key]
            for entry_id, fields in entries:
                events.append(Event(queue, entry_id, fields))
            if entries:
                self._last[key] = entries[-1][0]
        if events:
            self._deliver(events)
        return len(events)

    def _deliver(self, events: Sequence[Event]) -> None:
        for listener in list(self._listeners):
            try:
                listener(events)
            except Exception:
                logger.exception("Event listener %r failed", listener)

    async def _run(self) -> None:
        backoff_s = 0.1
        while True:
            try:
                await self.read_once()
            except (RedisError, OSError) as exc:
                if self.redis_ok:
                    logger.warning("Event feed: Redis unavailable (%s)", type(exc).__name__)
                self.redis_ok = False
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.max_backoff_s)
                continue
            if not self.redis_ok:
                logger.info("Event feed: Redis reachable again")
            self.redis_ok = True
            backoff_s = 0.1


__all__ = ["Event", "EventFeed", "Listener"]

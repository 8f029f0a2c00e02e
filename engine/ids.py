"""Generated job ids, decided before an add is sent.

An add script must declare the hash of every job it creates, so the id of a job without a
fixed ``job_id`` is known before the call: each :class:`Queue` reserves blocks of ids from
the queue's ``seq`` counter (one HINCRBY per block) and hands them out in order. A resent
reservation, a block left unused when the process ends, or two reservations racing only
leave gaps in the ids, which are harmless: ids are unique, not dense. The counter also
orders prioritized jobs (lua/include/waiting.lua): both uses only need values never
handed out before.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

ID_BLOCK = 100


class JobIds:
    """Ids reserved from one queue's counter, handed out in ascending order per block."""

    def __init__(self, client: Any, meta_key: str, block: int = ID_BLOCK) -> None:
        if block < 1:
            raise ValueError("block must be at least 1")
        self._client = client
        self._meta = meta_key
        self._block = block
        # Ranges [next, end] still unused, in ascending order.
        self._ranges: deque[list[int]] = deque()
        # The reservation on the wire, if any: adds made meanwhile wait for it rather than
        # each reserving a block of their own. Tied to its loop (a Queue may outlive one).
        self._pending: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    def available(self) -> int:
        return sum(end - start + 1 for start, end in self._ranges)

    def take_now(self, n: int) -> list[str] | None:
        """``n`` ids if already reserved, without a round trip; else ``None``."""
        if n == 1 and self._ranges:  # a lone add: the common case, kept cheap
            span = self._ranges[0]
            span[0] += 1
            if span[0] > span[1]:
                self._ranges.popleft()
            return [str(span[0] - 1)]
        if self.available() < n:
            return None
        ids: list[str] = []
        while len(ids) < n:
            span = self._ranges[0]
            take = min(n - len(ids), span[1] - span[0] + 1)
            ids += (str(i) for i in range(span[0], span[0] + take))
            span[0] += take
            if span[0] > span[1]:
                self._ranges.popleft()
        return ids

    async def take(self, n: int) -> list[str]:
        """``n`` fresh ids, reserving a block (or more, for a big batch) when short."""
        loop = asyncio.get_running_loop()
        while (ids := self.take_now(n)) is None:
            pending = self._pending
            if pending is not None and pending[0] is loop and not pending[1].done():
                await asyncio.shield(pending[1])
                continue
            done: asyncio.Future[None] = loop.create_future()
            self._pending = (loop, done)
            try:
                size = max(self._block, n - self.available())
                end = int(await self._client.hincrby(self._meta, "seq", size))
                self._ranges.append([end - size + 1, end])
            finally:
                self._pending = None
                done.set_result(None)  # a failed reservation: each waiter tries its own
        return ids

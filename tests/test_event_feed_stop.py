"""EventFeed.stop ends the feed even when a cancellation is lost in the read it was blocked
in (seen with redis-py on Python 3.11: the service's shutdown hung in the app's cleanup
with the feed reading on, cancelling() == 1)."""

from __future__ import annotations

import asyncio

import pytest

from engine import QueueManager
from engine.events import EventFeed


async def test_stop_ends_a_feed_whose_first_cancellation_is_swallowed(
    manager: QueueManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.create_queue("q")
    feed = EventFeed(manager, block_ms=50)
    real_read = feed.read_once
    swallowed = asyncio.Event()

    async def read_losing_one_cancel(block: bool = True) -> int:
        if not swallowed.is_set():
            try:
                return await real_read(block)
            except asyncio.CancelledError:
                swallowed.set()  # as the lost cancellation did: read on
                return 0
        return await real_read(block)

    monkeypatch.setattr(feed, "read_once", read_losing_one_cancel)
    await feed.start()
    await asyncio.sleep(0)  # the feed is in its first read
    task = feed._task
    stopping = asyncio.ensure_future(feed.stop())
    done, _ = await asyncio.wait({stopping}, timeout=10)
    try:
        assert stopping in done, "stop() did not end the feed"
        assert swallowed.is_set() and not feed.running
    finally:
        if task is not None and not task.done():  # without the fix: do not leak it
            task.cancel()
            stopping.cancel()

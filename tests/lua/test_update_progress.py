"""update_progress-3.lua: progress of a running job, token-checked, resend-safe."""

from __future__ import annotations

from typing import Any

from engine import Queue, QueueManager
from tests.lua.worker_calls import calls, claim


def progress(q: Queue, token: str, value: str) -> Any:
    return calls(q).progress("1", token, value)


async def test_progress_is_stored_and_announced(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    assert await progress(q, job[1], "42") == 1
    got = await q.get_job("1")
    assert got is not None and got.progress == 42
    event = (await q.events(1))[0]
    assert event["event"] == "progress" and event["progress"] == "42"
    # The same value again (a resend): no second event.
    assert await progress(q, job[1], "42") == 0
    assert [e["event"] for e in await q.events(100)].count("progress") == 1


async def test_progress_with_a_stale_token_is_refused(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    await claim(q)
    assert await progress(q, "w1:0", "42") == -2
    assert await manager.client.hget(q.keys.job("1"), "prog") is None

"""release_jobs-6+.lua: a closing worker hands its unfinished jobs back at once."""

from __future__ import annotations

from engine import QueueManager
from tests.lua.worker_calls import calls, claim


async def test_release_returns_held_jobs_to_wait_and_refuses_stale_tokens(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    await q.add(2)
    jobs = await claim(q)
    k = q.keys
    released = await calls(q).release([("1", jobs[0][1]), ("2", "stale:1")])
    assert released == ["1"]
    # Sent again (a lost reply): nothing more happens, no second event.
    events = len(await q.events(100))
    assert await calls(q).release([("1", jobs[0][1]), ("2", "stale:1")]) == []
    assert len(await q.events(100)) == events
    assert await c.lrange(k.wait, 0, -1) == ["1"]
    assert await c.zscore(k.active, "2") is not None
    h = await c.hgetall(k.job("1"))
    assert "tok" not in h and "atm" not in h  # the attempt did not count
    assert await c.zscore(k.marker, "w") == 0

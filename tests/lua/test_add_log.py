"""add_log-1.lua: capped per-job log lines, token-checked."""

from __future__ import annotations

from typing import Any

from engine import Queue, QueueManager


async def claim(q: Queue) -> list[Any]:
    k = q.keys
    result = await q.store.scripts.move_to_active(
        [k.meta, k.wait, k.delayed, k.active, k.events, k.marker, k.limiter],
        [k.job_prefix, "w1", 10, 30_000, 1000, 0, 1000, 1000],
    )
    return list(result[4])


async def test_log_lines_are_capped_to_the_newest(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    for i in range(4):
        n = await q.store.scripts.add_log(
            [q.keys.active], [q.keys.job_prefix, "1", job[1], f"line {i}", 3]
        )
    assert n == 3
    assert await q.get_job_logs("1") == ["line 1", "line 2", "line 3"]


async def test_log_with_a_stale_token_is_refused(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    await claim(q)
    n = await q.store.scripts.add_log([q.keys.active], [q.keys.job_prefix, "1", "x:1", "hi", 3])
    assert n == -2
    assert await q.get_job_logs("1") == []

"""add_log-3.lua: capped per-job log lines, token-checked, a resent line kept once."""

from __future__ import annotations

from engine import QueueManager
from tests.lua.worker_calls import calls, claim


async def test_log_lines_are_capped_to_the_newest(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    q.store.max_log_lines = 3
    for i in range(4):
        n = await calls(q).log("1", job[1], f"line {i}", i + 1)
    assert n == 3
    assert await q.get_job_logs("1") == ["line 1", "line 2", "line 3"]


async def test_a_resent_line_is_not_appended_twice(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    assert await calls(q).log("1", job[1], "one", 1) == 1
    assert await calls(q).log("1", job[1], "one", 1) == 1  # the client resent it
    assert await calls(q).log("1", job[1], "two", 2) == 2
    assert await q.get_job_logs("1") == ["one", "two"]


async def test_log_with_a_stale_token_is_refused(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    await claim(q)
    assert await calls(q).log("1", "x:1", "hi", 1) == -2
    assert await q.get_job_logs("1") == []

"""Faults with real processes: a worker killed or frozen mid-job, Redis restarted under
load. Delivery is at-least-once; nothing may be lost and no job may end in two states."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for

from engine import Job, JobState, QueueManager
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("worker_proc.py")
ROOT = Path(__file__).resolve().parents[1]


class WorkerProcess:
    """A worker_proc.py child whose stderr is collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        assert proc.stderr is not None
        self._reader = asyncio.create_task(self._read(proc.stderr))

    @classmethod
    async def spawn(
        cls, url: str, prefix: str, queue: str, lease_ms: int, n: int, block_s: float = 1.0
    ) -> WorkerProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), url, prefix, queue, str(lease_ms), str(n), str(block_s),
            stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        return cls(proc)

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def stop(self) -> int:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        code = await self.proc.wait()
        await self._reader
        return code


@pytest.fixture
async def procs() -> AsyncIterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for p in started:
        await p.stop()


async def _said(p: WorkerProcess, text: str) -> bool:
    return p.said(text)


async def _stats(manager: QueueManager, queue: str) -> Any:
    return await manager.get_stats(queue)


async def test_worker_killed_mid_job_loses_nothing(
    redis_server: RedisServer, prefix: str, manager: QueueManager, procs: list[WorkerProcess]
) -> None:
    q = manager.create_queue("q")
    victim = await WorkerProcess.spawn(redis_server.url, prefix, "q", 1000, 5)
    procs.append(victim)
    await wait_for(lambda: _said(victim, "READY"))
    for i in range(20):
        await q.add({"sleep": 30 if i < 5 else 0, "i": i})
    await wait_for(lambda: _held(manager, 5))
    victim.signal(signal.SIGKILL)
    await victim.proc.wait()
    held = set(await manager.client.zrange(q.keys.active, 0, -1))

    async def handler(job: Job) -> str:
        return "rescued"

    await manager.process("q", handler, concurrency=4, stalled_interval_ms=200, block_timeout_s=0.5)
    await wait_for(lambda: _all_completed(manager, 20), timeout_s=20)
    stats = await q.get_stats()
    assert (stats.completed, stats.failed, stats.active, stats.waiting) == (20, 0, 0, 0)
    stalled = {e["jobId"] for e in await q.events(1000) if e["event"] == "stalled"}
    assert stalled == held
    for job_id in held:
        job = await q.get_job(job_id)
        assert job is not None and job.stalled_count == 1 and job.return_value == "rescued"


async def _held(manager: QueueManager, n: int) -> bool:
    """``n`` jobs running, their claims confirmed (a kill is then a stall, not a claim
    handed back unconfirmed)."""
    q = manager.get_queue("q")
    c = manager.client
    return bool(await c.zcard(q.keys.active) >= n and await c.zcard(q.keys.claims) == 0)


async def _all_completed(manager: QueueManager, n: int) -> bool:
    return bool((await _stats(manager, "q")).completed >= n)


async def test_frozen_worker_past_its_lease_is_refused_after_resuming(
    redis_server: RedisServer, prefix: str, manager: QueueManager, procs: list[WorkerProcess]
) -> None:
    q = manager.create_queue("q")
    zombie = await WorkerProcess.spawn(redis_server.url, prefix, "q", 600, 1)
    procs.append(zombie)
    await wait_for(lambda: _said(zombie, "READY"))
    await q.add({"sleep": 0.5})
    await wait_for(lambda: manager.client.zscore(q.keys.active, "1"))
    zombie.signal(signal.SIGSTOP)

    async def handler(job: Job) -> str:
        return "rescuer"

    rescuer = await manager.process("q", handler, stalled_interval_ms=200, block_timeout_s=0.5)
    await wait_for(lambda: _all_completed(manager, 1), timeout_s=15)
    await rescuer.close()
    zombie.signal(signal.SIGCONT)
    await wait_for(lambda: _said(zombie, "PROGRESS REFUSED 1"), timeout_s=15)
    await wait_for(lambda: _said(zombie, "completion refused"), timeout_s=15)
    completions = [e for e in await q.events(1000) if e["event"] == "completed"]
    assert [e["jobId"] for e in completions] == ["1"]
    job = await q.get_job("1")
    assert job is not None and job.state == JobState.COMPLETED
    assert job.return_value == "rescuer" and job.progress == 0
    zombie.signal(signal.SIGTERM)
    assert await zombie.proc.wait() == 0


async def test_redis_restarted_under_load_with_aof_loses_nothing(
    redis_factory: Callable[..., RedisServer], prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "engine.worker")
    server = redis_factory(persistence="always")
    m = QueueManager(server.url, prefix=prefix)
    try:
        q = m.create_queue("q")

        async def handler(job: Job) -> int:
            await asyncio.sleep(0.05)
            return int(job.data)

        for _ in range(2):
            await m.process(
                "q",
                handler,
                concurrency=10,
                lease_ms=1000,
                stalled_interval_ms=200,
                block_timeout_s=0.5,
                reconnect_max_s=0.2,
            )
        await q.add_bulk([{"data": i} for i in range(300)])
        await wait_for(lambda: _completed_on(m, 50), timeout_s=20)
        before = await _completed_count(m)
        server.kill()
        assert before < 300  # the outage hits mid-load
        await wait_for(lambda: asyncio.sleep(0, "Redis unavailable" in caplog.text))
        await asyncio.to_thread(server.start)
        await wait_for(lambda: _completed_on(m, 300), timeout_s=30)
        stats = await q.get_stats()
        assert (stats.completed, stats.failed, stats.active, stats.waiting) == (300, 0, 0, 0)
        assert "Redis connection restored" in caplog.text
    finally:
        await m.close_all()


async def _completed_count(m: QueueManager) -> int:
    return (await m.get_stats("q")).completed


async def _completed_on(m: QueueManager, n: int) -> bool:
    try:
        return bool((await m.get_stats("q")).completed >= n)
    except Exception:
        return False  # Redis is restarting

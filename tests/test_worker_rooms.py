"""The worker's rooms: the supervisor restarts a task that fails and shows it in status."""

from __future__ import annotations

import asyncio
import logging

import pytest
from helpers import wait_for

from engine import Job, QueueManager
from engine.metrics import EngineMetrics
from engine.worker.supervisor import Supervisor
from tests.test_api_helpers import serve


async def test_a_failing_task_is_logged_with_its_traceback_restarted_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "engine.worker")
    runs = 0
    again = asyncio.Event()

    async def body() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("boom")
        again.set()
        await asyncio.Event().wait()

    sup = Supervisor("test", cap_s=0.1)
    sup.start("job", body)
    await asyncio.wait_for(again.wait(), 5)
    status = sup.status["job"]
    assert status.restarts == 1 and status.running
    assert status.last_error == "RuntimeError: boom"
    record = next(r for r in caplog.records if "task job failed" in r.getMessage())
    assert record.exc_info is not None and "boom" in str(record.exc_info[1])
    await sup.cancel()
    assert not sup.status["job"].running


async def test_worker_status_shows_its_tasks(manager: QueueManager) -> None:
    async def handler(job: Job) -> None:
        return None

    worker = await manager.process("q", handler, concurrency=2)
    await wait_for(lambda: asyncio.sleep(0, worker.status()["tasks"]["exchange"]["running"]))
    status = worker.status()
    assert status["restarts"] == 0 and status["last_error"] is None
    assert set(status["tasks"]) == {"exchange", "leases", "stalled"}
    assert status["concurrency"] == 2 and status["running"] == 0


async def test_an_unexpected_error_in_an_exchange_is_the_supervisors_and_loses_nothing(
    manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "engine.worker")
    q = manager.create_queue("q")
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    worker = await manager.process("q", handler, block_timeout_s=0.5)
    exchange = worker._exchange
    real = exchange._send
    broken = [True]

    async def send_once_broken(*args: object) -> float | None:
        if broken and args[0]:  # the first exchange carrying a finish
            broken.clear()
            raise RuntimeError("a bug in the exchange")
        return await real(*args)  # type: ignore[arg-type]

    exchange._send = send_once_broken  # type: ignore[method-assign]
    jobs = [await q.add(i) for i in range(3)]
    for job in jobs:
        await wait_for(lambda job=job: _completed(manager, job.id))
    assert sorted(ran) == sorted(j.id for j in jobs)  # each ran once: nothing lost
    status = worker.status()
    assert status["restarts"] == 1 and "a bug in the exchange" in status["last_error"]
    assert "task exchange failed" in caplog.text


async def _completed(manager: QueueManager, job_id: str) -> bool:
    job = await manager.get_job("q", job_id)
    return job is not None and job.state == "completed"


async def test_a_restarted_worker_task_shows_in_health_and_metrics(manager: QueueManager) -> None:
    q = manager.create_queue("q")

    async def handler(job: Job) -> None:
        return None

    worker = await manager.process("q", handler, block_timeout_s=0.5)
    real = worker._exchange._send
    broken = [True]

    async def send_once_broken(*args: object) -> float | None:
        if broken:
            broken.clear()
            raise RuntimeError("a bug in the exchange")
        return await real(*args)  # type: ignore[arg-type]

    worker._exchange._send = send_once_broken  # type: ignore[method-assign]
    job = await q.add(1)
    await wait_for(lambda: _completed(manager, job.id))
    async with serve(manager) as api:
        status, body, _ = await api.call("GET", "/api/queues/health")
    assert status == 200 and body["status"] == "degraded"
    assert {"queue": "q", "reason": "worker_task_restarted", "task": "exchange", "count": 1} in (
        body["issues"]
    )
    text = (await EngineMetrics(manager).render()).decode()
    assert (
        f'engine_worker_task_restarts{{queue="q",task="exchange",worker="{worker.id}"}} 1.0' in text
    )

"""Cancelling a RUNNING job: its handler is stopped on whichever instance runs it (another
process, a thread, a process-pool child), the job ends failed and is never retried; a lost
pub/sub message still reaches the worker at its next lease renewal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine import Job, JobFailed, JobState, QueueManager
from engine.connection import RedisSettings
from tests.helpers import wait_for
from tests.redis_servers import RedisServer, create_acl_user

pytestmark = pytest.mark.slow

WORKER_PROC = Path(__file__).with_name("worker_proc.py")
ROOT = Path(__file__).resolve().parents[1]


async def _state(manager: QueueManager, queue: str, job_id: str) -> JobState | None:
    job = await manager.get_job(queue, job_id)
    return None if job is None else job.state


async def _is(manager: QueueManager, queue: str, job_id: str, state: JobState) -> bool:
    return await _state(manager, queue, job_id) is state


def _said(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def _after_all_events(manager: QueueManager, queue: str, job_id: str) -> list[str]:
    events = await manager.get_queue(queue).events(1000)
    return [e["event"] for e in reversed(events) if e.get("jobId") == job_id]


# -- another process ----------------------------------------------------------------------


class Child:
    """A tests/worker_proc.py process whose stderr is read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        assert proc.stderr is not None
        self._reader = asyncio.create_task(self._read(proc.stderr))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    async def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await self._reader


@pytest.fixture
async def child(redis_server: RedisServer, prefix: str) -> AsyncIterator[Child]:
    # A lease of 60 s: its renewal (every 15 s) would come long after the wait below, so
    # the cancel must arrive by the notice.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER_PROC), redis_server.url, prefix, "far", "60000", "1",
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    c = Child(proc)
    yield c
    await c.stop()


async def test_a_coroutine_handler_in_another_process_is_cancelled_and_not_retried(
    manager: QueueManager, child: Child
) -> None:
    q = manager.create_queue("far")
    await wait_for(lambda: child.said("READY"), timeout_s=30)
    job = await q.add({"sleep": 3600}, {"attempts": 5})
    await wait_for(lambda: _is(manager, "far", job.id, JobState.ACTIVE), timeout_s=30)

    assert await q.cancel_job(job.id, actor="alice") is JobState.ACTIVE

    with pytest.raises(JobFailed, match="cancelled by alice"):
        await job.wait(timeout_s=5)
    await wait_for(lambda: child.said(f"HANDLER CANCELLED {job.id}"), timeout_s=30)
    assert await child.said(f"Job {job.id} of queue far cancelled (notified)")
    # Its slot is free (concurrency 1): the next job runs there and completes.
    later = await q.add({"sleep": 0})
    assert (await later.wait(timeout_s=30))["by"] == child.proc.pid
    got = await q.get_job(job.id)
    assert got is not None and got.state is JobState.FAILED
    assert got.failed_reason == "cancelled by alice" and got.attempts_made == 1
    assert await _after_all_events(manager, "far", job.id) == [
        "waiting", "active", "cancelled", "failed"
    ]  # fmt: skip
    assert not await child.said("PROGRESS REFUSED")  # the handler never went on


# -- the message lost: renewal ----------------------------------------------------------


async def test_a_lost_notice_still_cancels_at_the_next_lease_renewal(
    redis_factory: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "engine.worker")
    server = redis_factory()
    create_acl_user(server, "w", "pw", (f"{prefix}:*",))
    admin = QueueManager(server.url, prefix=prefix)
    workers = QueueManager(f"redis://w:pw@127.0.0.1:{server.port}/0", prefix=prefix)
    started: dict[str, asyncio.Event] = {}

    async def handler(job: Job) -> str:
        started.setdefault(job.id, asyncio.Event()).set()
        await asyncio.Event().wait()  # until cancelled
        return "never"

    try:
        q = admin.create_queue("q")
        await workers.process("q", handler, lease_ms=3000, block_timeout_s=0.5)
        notices = workers.cancel_notices
        assert notices is not None and notices.subscribed(q.keys.cancel_channel)

        # The subscriber loses its connection and may not subscribe again (no channel
        # rights for now): whatever is published meanwhile reaches nobody.
        sync = server.client()
        try:
            sync.execute_command("ACL", "SETUSER", "w", "resetchannels")
            sync.execute_command("CLIENT", "KILL", "USER", "w", "TYPE", "pubsub")
        finally:
            sync.close()
        await wait_for(lambda: _not_subscribed(notices, q.keys.cancel_channel), timeout_s=10)

        first = await q.add("one", {"attempts": 3})
        await wait_for(lambda: _is(admin, "q", first.id, JobState.ACTIVE), timeout_s=10)
        await q.cancel_job(first.id, "alice")
        await wait_for(
            lambda: _log(caplog, f"Job {first.id} of queue q cancelled (seen at lease renewal)"),
            timeout_s=10,
        )
        # The handler's slot is free again: the next job runs (concurrency 1).
        second = await q.add("two")
        await wait_for(lambda: _is(admin, "q", second.id, JobState.ACTIVE), timeout_s=10)

        # Rights back: the subscriber comes back by itself and notices flow again.
        sync = server.client()
        try:
            sync.execute_command("ACL", "SETUSER", "w", "allchannels")
        finally:
            sync.close()
        await wait_for(lambda: _subscribed(notices, q.keys.cancel_channel), timeout_s=90)
        await q.cancel_job(second.id, "bob")
        await wait_for(
            lambda: _log(caplog, f"Job {second.id} of queue q cancelled (notified)"), timeout_s=10
        )
        for job_id in (first.id, second.id):
            assert await _state(admin, "q", job_id) is JobState.FAILED
    finally:
        await workers.close_all()
        await admin.close_all()


async def _log(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return _said(caplog, text)


async def _subscribed(notices: Any, channel: str) -> bool:
    return bool(notices.subscribed(channel))


async def _not_subscribed(notices: Any, channel: str) -> bool:
    return not notices.subscribed(channel)


# -- a thread -----------------------------------------------------------------------------


async def test_a_thread_handler_ends_as_cancelled_at_once_and_its_outcome_is_discarded(
    manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "engine.worker")
    release = threading.Event()
    entered = threading.Event()

    def handler(job: Job) -> str:  # a plain function: it runs in a thread
        if job.data == "block":
            entered.set()
            release.wait(60)
        return f"done {job.data}"

    q = manager.create_queue("q")
    await manager.process("q", handler, block_timeout_s=0.5)
    job = await q.add("block", {"attempts": 3})
    await wait_for(lambda: _flag(entered), timeout_s=10)

    await q.cancel_job(job.id, "alice")
    with pytest.raises(JobFailed, match="cancelled by alice"):
        await job.wait(timeout_s=5)
    await wait_for(lambda: _log(caplog, f"Job {job.id} of queue q cancelled (notified)"))
    assert _said(caplog, "a thread cannot be stopped")

    # The thread runs on; when it returns, its outcome is dropped and its slot freed.
    later = await q.add("next")
    release.set()
    assert await later.wait(timeout_s=30) == "done next"
    got = await q.get_job(job.id)
    assert got is not None and got.state is JobState.FAILED and got.return_value is None
    assert "completed" not in await _after_all_events(manager, "q", job.id)


async def _flag(event: threading.Event) -> bool:
    return event.is_set()


# -- a process-pool child -----------------------------------------------------------------


def pool_handler(job: Job) -> Any:
    """Module-level, so a spawned child can import it. ``data``: [mode, directory]."""
    mode, where = job.data
    directory = Path(where)
    (directory / f"{job.id}.pid").write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if mode == "stubborn":
            with contextlib.suppress(BaseException):  # ignores every stop request
                time.sleep(0.05)
            continue
        if mode == "quick" or (directory / "release").exists():
            return {"pid": os.getpid(), "mode": mode}
        time.sleep(0.05)
    return "timed out"


async def _pid_file(directory: Path, job_id: str) -> int | None:
    path = directory / f"{job_id}.pid"
    return int(path.read_text()) if path.exists() and path.read_text() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_process_pool_call_is_stopped_and_the_child_and_its_pool_live_on(
    manager: QueueManager, tmp_path: Path
) -> None:
    q = manager.create_queue("q")
    await manager.process(
        "q", pool_handler, concurrency=2, use_process_pool=True, pool_size=2, block_timeout_s=0.5
    )
    cancelled = await q.add(["wait", str(tmp_path)], {"attempts": 3})
    other = await q.add(["wait", str(tmp_path)])
    pid = await wait_for(lambda: _pid_file(tmp_path, cancelled.id), timeout_s=60)
    await wait_for(lambda: _pid_file(tmp_path, other.id), timeout_s=60)

    await q.cancel_job(cancelled.id, "alice")
    with pytest.raises(JobFailed, match="cancelled by alice"):
        await cancelled.wait(timeout_s=5)
    # The call stopped and its child lives on: the next job runs in that very child (the
    # other child is still busy with `other`).
    third = await q.add(["quick", str(tmp_path)])
    assert (await third.wait(timeout_s=30))["pid"] == pid
    assert _alive(pid)
    # The job sharing the pool never noticed.
    (tmp_path / "release").write_text("go")
    assert (await other.wait(timeout_s=30))["mode"] == "wait"
    got = await q.get_job(cancelled.id)
    assert got is not None and got.state is JobState.FAILED and got.attempts_made == 1


async def test_a_pool_child_that_ignores_the_stop_is_killed(
    manager: QueueManager, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "engine.worker")
    q = manager.create_queue("q")
    await manager.process(
        "q", pool_handler, use_process_pool=True, pool_size=1, block_timeout_s=0.5
    )
    job = await q.add(["stubborn", str(tmp_path)], {"attempts": 3})
    pid = await wait_for(lambda: _pid_file(tmp_path, job.id), timeout_s=60)
    await q.cancel_job(job.id)
    await wait_for(lambda: _dead(pid), timeout_s=30)
    assert _said(caplog, "ignored its stop request")
    # A fresh pool runs the next job.
    later = await q.add(["quick", str(tmp_path)])
    assert (await later.wait(timeout_s=60))["pid"] != pid
    assert await _state(manager, "q", job.id) is JobState.FAILED


async def _dead(pid: int) -> bool:
    return not _alive(pid)


# -- Redis Cluster --------------------------------------------------------------------------


async def test_on_a_cluster_a_worker_on_another_master_hears_the_cancel(
    redis_cluster: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The cancel channels of queues on different masters: redis-py's asyncio Cluster client
    (8.0 on) subscribes once, on one node, and a PUBLISH made on any master reaches it."""
    caplog.set_level(logging.INFO, "engine.worker")
    settings = RedisSettings(url=redis_cluster.url, socket_timeout_s=2.0)
    admin = QueueManager(prefix=prefix, settings=settings)
    workers = QueueManager(prefix=prefix, settings=settings)
    names = [f"cc{i}" for i in range(4)]  # spread over the masters (one slot each)

    async def handler(job: Job) -> str:
        await asyncio.Event().wait()
        return "never"

    try:
        for name in names:
            admin.create_queue(name)
            await workers.process(name, handler, lease_ms=60_000, block_timeout_s=0.5)
        notices = workers.cancel_notices
        assert notices is not None and notices.supported
        await admin.client.initialize()
        nodes = {admin.client.get_node_from_key(admin.get_queue(n).keys.events).name for n in names}
        assert len(nodes) >= 2  # the queues live on different masters
        for name in names:
            await _cancel_one_running(admin, name, caplog)
    finally:
        await workers.close_all()
        await admin.close_all()


async def _cancel_one_running(
    admin: QueueManager, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    job = await admin.add_job(name, {})
    await wait_for(lambda: _is(admin, name, job.id, JobState.ACTIVE), timeout_s=20)
    await admin.cancel_job(name, job.id, "alice")
    text = f"Job {job.id} of queue {name} cancelled (notified)"
    await wait_for(lambda: _log(caplog, text), timeout_s=20)

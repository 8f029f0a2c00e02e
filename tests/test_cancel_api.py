"""POST /api/queues/{name}/jobs/{id}/cancel over real HTTP: admin only, audited with the
token's subject, 404 for an unknown job, 409 naming the state of a finished one; and the
dashboard's cancel action behind its CSRF check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from test_api_helpers import Api, register_seed_queues, serve
from test_dashboard_auth import basic

from engine import Job, JobState, QueueManager
from tests.helpers import wait_for
from tests.monitoring import PASSWORD, serve_dashboard


@pytest.fixture
async def api(manager: QueueManager) -> AsyncIterator[Api]:
    register_seed_queues(manager)
    async with serve(manager) as a:
        yield a


def _path(job_id: str) -> str:
    return f"/api/queues/ayt-sync/jobs/{job_id}/cancel"


async def test_an_admin_cancels_a_waiting_job_and_the_audit_names_the_token_subject(
    api: Api,
) -> None:
    job = await api.manager.add_job("ayt-sync", {"n": 1})
    status, body, _ = await api.call("POST", _path(job.id), headers=api.headers(sub="ops-alice"))
    assert status == 200
    assert body["success"] is True and body["jobId"] == job.id and body["queue"] == "ayt-sync"
    assert body["state"] == "failed" and body["was"] == "waiting"
    assert body["message"] == f"Job {job.id} cancelled (it was waiting)"
    got = await api.manager.get_job("ayt-sync", job.id)
    assert got is not None and got.state is JobState.FAILED
    assert got.failed_reason == "cancelled by ops-alice"
    # The seed queue's 3 attempts do not bring it back.
    assert got.attempts_made == 0
    _, ev, _ = await api.call("GET", "/api/queues/ayt-sync/events")
    assert [e["by"] for e in ev["events"] if e["event"] == "cancelled"] == ["ops-alice"]


async def test_a_viewer_may_not_cancel(api: Api) -> None:
    job = await api.manager.add_job("ayt-sync", {"n": 1})
    status, body, _ = await api.call("POST", _path(job.id), role="viewer")
    assert status == 403 and body["success"] is False
    status, _, _ = await api.call("POST", _path(job.id), role=None)
    assert status == 403
    status, _, _ = await api.call("POST", _path(job.id), headers={})
    assert status == 401
    got = await api.manager.get_job("ayt-sync", job.id)
    assert got is not None and got.state is JobState.WAITING


async def test_unknown_job_is_404_and_a_finished_one_409_naming_its_state(api: Api) -> None:
    status, body, _ = await api.call("POST", _path("nope"))
    assert status == 404 and body["success"] is False and "not found" in body["error"]

    async def handler(job: Job) -> str:
        return "ok"

    done = await api.manager.add_job("ayt-sync", {})
    await api.manager.process("ayt-sync", handler, block_timeout_s=0.5)
    assert await done.wait(timeout_s=30) == "ok"
    status, body, _ = await api.call("POST", _path(done.id))
    assert status == 409 and body["success"] is False
    assert body["error"] == (
        f"job {done.id} is completed: only waiting, delayed or active jobs can be cancelled"
    )
    # A body with fields is refused like every admin action's.
    status, _, _ = await api.call("POST", _path(done.id), json={"force": True})
    assert status == 400


async def test_cancel_of_a_running_job_stops_its_handler(api: Api) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def handler(job: Job) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise
        return "never"

    await api.manager.process("ayt-sync", handler, block_timeout_s=0.5)
    job = await api.manager.add_job("ayt-sync", {})
    await asyncio.wait_for(started.wait(), 30)
    status, body, _ = await api.call("POST", _path(job.id))
    assert status == 200 and body["was"] == "active"
    note = "its handler is being stopped"
    assert body["message"] == f"Job {job.id} cancelled (it was active): {note}"
    await asyncio.wait_for(stopped.wait(), 30)
    await wait_for(lambda: _free(api.manager), timeout_s=10)


async def _free(manager: QueueManager) -> bool:
    return all(w.running == 0 for w in manager.workers)


async def test_the_dashboard_cancel_needs_its_csrf_token_and_answers_409_once_done(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    job = await q.add({})
    admin = basic("admin", PASSWORD)
    async with serve_dashboard(manager) as base, aiohttp.ClientSession() as s:
        url = f"{base}/admin/queues/api/queues/q/jobs/{job.id}/cancel"
        async with s.post(url, headers=admin) as r:
            assert r.status == 403  # no CSRF token
        got = await q.get_job(job.id)
        assert got is not None and got.state is JobState.WAITING
        async with s.get(base + "/admin/queues/api/session", headers=admin) as r:
            csrf = (await r.json())["csrf"]
        headers = {**admin, "X-CSRF-Token": csrf}
        async with s.post(url, headers=headers) as r:
            assert r.status == 200 and (await r.json())["action"] == "cancel"
        async with s.post(url, headers=headers) as r:
            assert r.status == 409 and "is failed" in (await r.json())["error"]
    got = await q.get_job(job.id)
    assert got is not None and got.failed_reason == "cancelled by admin"

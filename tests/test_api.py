"""Every endpoint over real HTTP on loopback: shapes as the seed, status codes, audit."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from test_api_helpers import Api, register_seed_queues, serve

from engine import QueueManager
from engine.api.handlers.health import STARTED_AT
from tests.helpers import BULL_JOB_FIELDS

ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
STATS_FIELDS = {"name", "waiting", "active", "completed", "failed", "delayed", "paused", "total"}
JOB_FIELDS = BULL_JOB_FIELDS


@pytest.fixture
async def api(manager: QueueManager) -> AsyncIterator[Api]:
    register_seed_queues(manager)
    async with serve(manager) as a:
        yield a


async def test_all_stats_has_the_seed_shape(api: Api) -> None:
    await api.manager.add_job("serpram-sync", {"n": 1})
    status, body, _ = await api.call("GET", "/api/queues/stats", role="viewer")
    assert status == 200
    assert set(body) == {"success", "timestamp", "queues"}
    assert body["success"] is True
    assert ISO_MS_Z.match(body["timestamp"])
    assert set(body["queues"]) == {"serpram-sync", "ayt-sync"}
    serpram = body["queues"]["serpram-sync"]
    assert set(serpram) == STATS_FIELDS
    assert serpram["name"] == "serpram-sync"
    assert serpram["waiting"] == 1 and serpram["total"] == 1


async def test_queue_stats_returns_one_queue(api: Api) -> None:
    status, body, _ = await api.call("GET", "/api/queues/ayt-sync/stats", role="viewer")
    assert status == 200
    assert body["success"] is True and ISO_MS_Z.match(body["timestamp"])
    assert set(body["stats"]) == STATS_FIELDS
    assert body["stats"]["name"] == "ayt-sync"


async def test_unknown_queue_is_404_json(api: Api) -> None:
    for path in ("/api/queues/nope/stats", "/api/queues/nope/jobs", "/api/queues/nope/events"):
        status, body, _ = await api.call("GET", path)
        assert status == 404, path
        assert body["success"] is False and "not found" in body["error"]
    for path in ("/api/queues/nope/pause", "/api/queues/nope/clean/failed"):
        status, _, _ = await api.call("POST", path)
        assert status == 404, path


async def test_jobs_listing_in_bulls_shape(api: Api) -> None:
    for i in range(12):
        await api.manager.add_job("serpram-sync", {"i": i})
    status, body, _ = await api.call(
        "GET", "/api/queues/serpram-sync/jobs?state=waiting&start=0&end=10", role="viewer"
    )
    assert status == 200
    assert body["state"] == "waiting" and body["count"] == 11 and len(body["jobs"]) == 11
    job = body["jobs"][0]
    assert set(job) >= JOB_FIELDS
    assert job["data"] == {"i": 0}
    assert job["opts"]["attempts"] == 3
    assert job["opts"]["backoff"] == {"type": "exponential", "delay": 5000}
    assert job["attemptsMade"] == 0 and job["failedReason"] is None


async def test_jobs_listing_defaults_and_every_state(api: Api) -> None:
    await api.manager.add_job("ayt-sync", {}, {"delay": 60_000})
    status, body, _ = await api.call("GET", "/api/queues/ayt-sync/jobs")
    assert status == 200 and body["state"] == "waiting" and body["jobs"] == []
    for state in ("waiting", "active", "completed", "failed", "delayed"):
        status, body, _ = await api.call("GET", f"/api/queues/ayt-sync/jobs?state={state}")
        assert status == 200, state
        assert body["count"] == (1 if state == "delayed" else 0)


async def test_get_one_job_by_id(api: Api) -> None:
    job = await api.manager.add_job("serpram-sync", {"x": 1})
    status, body, _ = await api.call("GET", f"/api/queues/serpram-sync/jobs/{job.id}", role="u")
    assert status == 200
    assert body["job"]["id"] == job.id and body["job"]["state"] == "waiting"
    status, body, _ = await api.call("GET", "/api/queues/serpram-sync/jobs/999999")
    assert status == 404 and body["success"] is False


async def test_pause_and_resume_are_global_and_audited(
    api: Api, client: aioredis.Redis, prefix: str
) -> None:
    await api.manager.add_job("serpram-sync", {})
    status, body, _ = await api.call("POST", "/api/queues/serpram-sync/pause")
    assert status == 200
    assert body["success"] is True and body["paused"] is True and body["changed"] is True
    assert ISO_MS_Z.match(body["timestamp"]) and body["message"]
    assert await client.hexists(f"{prefix}:{{serpram-sync}}:meta", "paused")
    _, stats, _ = await api.call("GET", "/api/queues/serpram-sync/stats")
    assert stats["stats"]["paused"] == 1 and stats["stats"]["waiting"] == 0
    status, body, _ = await api.call("POST", "/api/queues/serpram-sync/pause")
    assert status == 200 and body["changed"] is False
    status, body, _ = await api.call("POST", "/api/queues/serpram-sync/resume")
    assert status == 200 and body["paused"] is False and body["changed"] is True
    assert not await client.hexists(f"{prefix}:{{serpram-sync}}:meta", "paused")

    status, body, _ = await api.call("GET", "/api/queues/serpram-sync/events?count=10")
    assert status == 200
    by_event = {e["event"]: e for e in body["events"]}
    assert by_event["paused"]["by"] == "tester"
    assert by_event["resumed"]["by"] == "tester"


async def _finish(
    client: aioredis.Redis, prefix: str, queue: str, state: str, ids: list[str]
) -> None:
    """Move jobs straight to a finished set, as a worker would, 2 hours ago."""
    now_ms = (await client.time())[0] * 1000
    for job_id in ids:
        await client.lrem(f"{prefix}:{{{queue}}}:wait", 0, job_id)
        await client.zadd(f"{prefix}:{{{queue}}}:{state}", {job_id: now_ms - 7_200_000})
        await client.hset(f"{prefix}:{{{queue}}}:job:{job_id}", "fon", now_ms - 7_200_000)


async def test_clean_completed_and_failed_with_grace_period(
    api: Api, client: aioredis.Redis, prefix: str
) -> None:
    done = [(await api.manager.add_job("serpram-sync", {})).id for _ in range(3)]
    bad = [(await api.manager.add_job("serpram-sync", {})).id for _ in range(2)]
    await _finish(client, prefix, "serpram-sync", "completed", done)
    await _finish(client, prefix, "serpram-sync", "failed", bad)

    # a grace period longer than their age keeps them
    status, body, _ = await api.call(
        "POST", "/api/queues/serpram-sync/clean/completed", json={"gracePeriod": 10_800_000}
    )
    assert status == 200 and body["removed"] == 0
    status, body, _ = await api.call(
        "POST", "/api/queues/serpram-sync/clean/completed", json={"gracePeriod": 3_600_000}
    )
    assert status == 200
    assert (
        body["removed"] == 3 and body["state"] == "completed" and body["gracePeriod"] == 3_600_000
    )
    assert body["message"] == "3 completed jobs removed from serpram-sync"
    status, body, _ = await api.call("POST", "/api/queues/serpram-sync/clean/failed")
    assert status == 200 and body["removed"] == 2 and body["gracePeriod"] == 3_600_000
    assert body["message"] == "2 failed jobs removed from serpram-sync"
    _, stats, _ = await api.call("GET", "/api/queues/serpram-sync/stats")
    assert stats["stats"]["completed"] == 0 and stats["stats"]["failed"] == 0
    _, ev, _ = await api.call("GET", "/api/queues/serpram-sync/events")
    cleaned = [e for e in ev["events"] if e["event"] == "cleaned" and e.get("by") == "tester"]
    # every clean is audited, the one that removed nothing too (count 0)
    assert cleaned and {e["count"] for e in cleaned} == {0, 3, 2}  # numbers, not strings
    assert all(isinstance(e["ts"], int) for e in ev["events"])


async def test_event_numbers_are_typed(api: Api) -> None:
    await api.manager.add_job("serpram-sync", {}, {"delay": 60_000})
    _, ev, _ = await api.call("GET", "/api/queues/serpram-sync/events?count=5")
    [delayed] = [e for e in ev["events"] if e["event"] == "delayed"]
    assert isinstance(delayed["ts"], int) and delayed["delay"] == 60_000
    assert isinstance(delayed["jobId"], str) and isinstance(delayed["id"], str)


async def test_retry_promote_remove_a_job(api: Api, client: aioredis.Redis, prefix: str) -> None:
    failed = await api.manager.add_job("ayt-sync", {"f": 1})
    await _finish(client, prefix, "ayt-sync", "failed", [failed.id])
    status, body, _ = await api.call("POST", f"/api/queues/ayt-sync/jobs/{failed.id}/retry")
    assert status == 200 and body["jobId"] == failed.id
    assert body["message"] == f"Job {failed.id} retried"
    _, got, _ = await api.call("GET", f"/api/queues/ayt-sync/jobs/{failed.id}")
    assert got["job"]["state"] == "waiting"
    # retrying a job that is not failed is a conflict naming the state it is in
    status, body, _ = await api.call("POST", f"/api/queues/ayt-sync/jobs/{failed.id}/retry")
    assert status == 409 and body["success"] is False
    assert body["error"] == f"job {failed.id} is waiting: only failed jobs can be retried"
    status, body, _ = await api.call("POST", f"/api/queues/ayt-sync/jobs/{failed.id}/promote")
    assert status == 409
    assert body["error"] == f"job {failed.id} is waiting: only delayed jobs can be promoted"

    delayed = await api.manager.add_job("ayt-sync", {}, {"delay": 3_600_000})
    status, _, _ = await api.call("POST", f"/api/queues/ayt-sync/jobs/{delayed.id}/promote")
    assert status == 200
    _, got, _ = await api.call("GET", f"/api/queues/ayt-sync/jobs/{delayed.id}")
    assert got["job"]["state"] == "waiting"

    status, body, _ = await api.call("DELETE", f"/api/queues/ayt-sync/jobs/{delayed.id}")
    assert status == 200 and body["jobId"] == delayed.id
    status, _, _ = await api.call("GET", f"/api/queues/ayt-sync/jobs/{delayed.id}")
    assert status == 404
    status, _, _ = await api.call("DELETE", f"/api/queues/ayt-sync/jobs/{delayed.id}")
    assert status == 404
    _, ev, _ = await api.call("GET", "/api/queues/ayt-sync/events")
    audited = {e["event"] for e in ev["events"] if e.get("by") == "tester"}
    assert {"retried", "promoted", "removed"} <= audited


@pytest.mark.parametrize(
    ("path", "queue", "label"),
    [
        ("/api/queues/serpram/run", "serpram-sync", "SERPRAM"),
        ("/api/queues/ayt/run", "ayt-sync", "AYT"),
    ],
)
async def test_run_now_enqueues_one_job(api: Api, path: str, queue: str, label: str) -> None:
    status, body, _ = await api.call("POST", path)
    assert status == 200
    assert set(body) == {"success", "message", "jobId", "queue", "timestamp"}
    assert body["message"] == f"{label} sync started"
    assert body["queue"] == queue and ISO_MS_Z.match(body["timestamp"])
    job = await api.manager.get_job(queue, body["jobId"])
    assert job is not None and job.data["by"] == "tester"


async def test_run_now_unknown_scheduler_is_404_and_refuses_options(api: Api) -> None:
    status, _, _ = await api.call("POST", "/api/queues/nope/run")
    assert status == 404
    status, body, _ = await api.call(
        "POST",
        "/api/queues/serpram/run",
        json={"opts": {"attempts": 1e9, "priority": -1, "delay": 1e15, "job_id": "x"}},
    )
    assert status == 400 and body["field"] == "opts"
    assert (await api.manager.get_stats("serpram-sync")).total == 0


async def test_health_is_public_and_counts_only(api: Api) -> None:
    await api.manager.add_job("serpram-sync", {"secret": "do-not-leak"})
    status, body, _ = await api.call("GET", "/api/queues/health", headers={})
    assert status == 200
    assert body["status"] == "healthy"
    assert body["message"] == "All queues are working normally"
    assert ISO_MS_Z.match(body["timestamp"])
    assert set(body["details"]["serpram-sync"]) == STATS_FIELDS
    assert body["details"]["serpram-sync"]["waiting"] == 1
    assert "do-not-leak" not in str(body)


async def test_health_degrades_on_failures_and_on_schedules_without_leader(
    api: Api, client: aioredis.Redis, prefix: str
) -> None:
    ids = [(await api.manager.add_job("ayt-sync", {})).id for _ in range(10)]
    now_ms = (await client.time())[0] * 1000
    for job_id in ids:
        await client.lrem(f"{prefix}:{{ayt-sync}}:wait", 0, job_id)
        await client.zadd(f"{prefix}:{{ayt-sync}}:failed", {job_id: now_ms})
    _, body, _ = await api.call("GET", "/api/queues/health", headers={})
    assert body["status"] == "degraded"
    assert {"queue": "ayt-sync", "reason": "failures", "count": 10} in body["issues"]
    await client.delete(f"{prefix}:{{ayt-sync}}:failed")

    await client.zadd(f"{prefix}:{{serpram-sync}}:schedules", {"serpram": now_ms + 60_000})
    assert api.app is not None
    api.app[STARTED_AT].at -= 3600  # past the `starting` window (tests/test_scheduler_health.py)
    _, body, _ = await api.call("GET", "/api/queues/health", headers={})
    assert body["status"] == "degraded"
    assert body["issues"] == [{"queue": "serpram-sync", "reason": "no_leader", "count": 1}]
    await client.set(f"{prefix}:{{serpram-sync}}:lease", "token", px=60_000)
    status, body, _ = await api.call("GET", "/api/queues/health", headers={})
    assert status == 200 and body["status"] == "healthy" and body["issues"] == []


async def test_schedules_endpoint_lists_what_the_reader_returns(manager: QueueManager) -> None:
    register_seed_queues(manager)

    async def reader() -> list[dict[str, object]]:
        return [{"name": "serpram", "queue": "serpram-sync", "nextRunAt": "x"}]

    async with serve(manager, schedules=reader) as api:
        status, body, _ = await api.call("GET", "/api/schedules", role="viewer")
    assert status == 200 and body["schedules"][0]["name"] == "serpram"


async def test_unknown_path_and_method_are_json(api: Api) -> None:
    status, body, _ = await api.call("GET", "/api/nothing-here")
    assert status == 404 and body["success"] is False
    status, body, resp = await api.call("GET", "/api/queues/serpram-sync/pause")
    assert status == 405 and body["success"] is False and "POST" in resp.headers["Allow"]


async def test_messages_are_english_with_plurals_and_409s_name_the_state(
    api: Api, client: aioredis.Redis, prefix: str
) -> None:
    one = (await api.manager.add_job("serpram-sync", {})).id
    await _finish(client, prefix, "serpram-sync", "completed", [one])
    _, body, _ = await api.call(
        "POST", "/api/queues/serpram-sync/clean/completed", json={"gracePeriod": 0}
    )
    assert body["message"] == "1 completed job removed from serpram-sync"
    _, body, _ = await api.call("POST", "/api/queues/serpram-sync/clean/failed")
    assert body["message"] == "0 failed jobs removed from serpram-sync"
    _, body, _ = await api.call("POST", "/api/queues/serpram-sync/pause")
    assert body["message"] == "Queue serpram-sync paused"
    _, body, _ = await api.call("POST", "/api/queues/serpram-sync/pause")
    assert body["message"] == "Queue serpram-sync paused (it was already paused)"
    _, body, _ = await api.call("POST", "/api/queues/serpram-sync/resume")
    assert body["message"] == "Queue serpram-sync resumed"

    running = (await api.manager.add_job("serpram-sync", {})).id
    await client.lrem(f"{prefix}:{{serpram-sync}}:wait", 0, running)
    await client.zadd(f"{prefix}:{{serpram-sync}}:active", {running: 0})
    status, body, _ = await api.call("DELETE", f"/api/queues/serpram-sync/jobs/{running}")
    assert status == 409
    assert body["error"] == f"job {running} is active: an active job cannot be removed"

"""Ambiguous or bad input is refused with a 400 that names the field, on the API and on the
dashboard's JSON endpoints alike: duplicate query parameters and JSON keys (which copy
wins differs between proxies, frameworks and parsers), and the dashboard's own checks."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from test_api_helpers import Api, serve

from engine import QueueManager
from tests.monitoring import PASSWORD, serve_dashboard


@pytest.fixture
async def api(manager: QueueManager) -> AsyncIterator[Api]:
    manager.create_queue("serpram-sync")
    async with serve(manager) as api:
        yield api


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/queues/serpram-sync/jobs?state=failed&state=completed", "state"),
        ("/api/queues/serpram-sync/jobs?start=0&end=5&start=1", "start"),
        ("/api/queues/serpram-sync/events?count=1&count=1", "count"),  # even when equal
    ],
)
async def test_a_duplicate_query_parameter_is_400_naming_it(
    api: Api, path: str, field: str
) -> None:
    status, body, _ = await api.call("GET", path, role="viewer")
    assert status == 400
    assert body["field"] == field and "more than once" in body["error"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"gracePeriod": 1, "gracePeriod": 99999999}', "gracePeriod"),
        (b'{"gracePeriod": 1, "x": {"a": 1, "a": 2}}', "a"),  # at any depth
    ],
)
async def test_a_duplicate_json_key_is_400_naming_it(api: Api, raw: bytes, field: str) -> None:
    status, body, _ = await api.call(
        "POST",
        "/api/queues/serpram-sync/clean/completed",
        data=raw,
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    assert status == 400
    assert body["field"] == field and "duplicate" in body["error"]


async def test_a_deeply_nested_body_is_400_not_500(api: Api) -> None:
    raw = b'{"gracePeriod": 1, "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    status, body, _ = await api.call(
        "POST",
        "/api/queues/serpram-sync/clean/completed",
        data=raw,
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    assert status == 400 and body["field"] == "body"


ADMIN = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}


async def _dashboard_post(base: str, path: str, raw: bytes) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "/admin/queues/api/session", headers=ADMIN) as r:
            csrf = (await r.json())["csrf"]
        headers = {**ADMIN, "X-CSRF-Token": csrf, "Content-Type": "application/json"}
        async with s.post(base + "/admin/queues/api" + path, data=raw, headers=headers) as r:
            return r.status, await r.json()


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (b'{"graceMs": -1}', "graceMs", "between 0 and"),
        (b'{"graceMs": "soon"}', "graceMs", "integer"),
        (b'{"graceMs": 0, "graceMs": 5}', "graceMs", "duplicate"),
        (b'{"graceMs": 0, "force": true}', "force", "unknown field"),
        (b"[1]", "body", "JSON object"),
        (b"{nope", "body", "not valid JSON"),
    ],
)
async def test_dashboard_400s_keep_their_message_and_field(
    manager: QueueManager, raw: bytes, field: str, words: str
) -> None:
    manager.create_queue("serpram-sync")
    async with serve_dashboard(manager) as base:
        status, body = await _dashboard_post(base, "/queues/serpram-sync/clean/completed", raw)
    assert status == 400
    assert body["success"] is False and body["field"] == field and words in body["error"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("state=bogus", "state"), ("page=-1", "page"), ("state=failed&state=waiting", "state")],
)
async def test_dashboard_reads_name_the_bad_parameter(
    manager: QueueManager, query: str, field: str
) -> None:
    manager.create_queue("serpram-sync")
    async with serve_dashboard(manager) as base, aiohttp.ClientSession() as s:
        url = f"{base}/admin/queues/api/queues/serpram-sync/jobs?{query}"
        async with s.get(url, headers=ADMIN) as r:
            assert r.status == 400
            body = await r.json()
    assert body["field"] == field
    assert r.headers["Cache-Control"] == "no-store"  # the security headers are on errors too
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


async def test_a_dashboard_action_refused_names_the_state_the_job_is_in(
    manager: QueueManager,
) -> None:
    queue = manager.create_queue("serpram-sync")
    job = await queue.add({})
    async with serve_dashboard(manager) as base:
        status, body = await _dashboard_post(base, f"/queues/serpram-sync/jobs/{job.id}/retry", b"")
    assert status == 409
    assert body["error"] == f"job {job.id} is waiting: only failed jobs can be retried"

"""Dashboard security over real HTTP (RELIABILITY S8): no default password, basic auth
with a timing-safe compare, tokens as an alternative, admin + CSRF for every action."""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from engine import QueueManager
from engine.api.dashboard import setup_dashboard
from engine.scheduler import define_schedule, upsert_schedule
from tests.helpers import wait_for
from tests.monitoring import PASSWORD, serve_dashboard, token


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


ADMIN = basic("admin", PASSWORD)


def test_without_a_password_the_dashboard_is_not_mounted_and_the_log_says_why(
    manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    app = web.Application()
    caplog.set_level(logging.WARNING, logger="engine.dashboard")
    assert setup_dashboard(app, manager, env={}) is False
    assert not [r for r in app.router.routes() if r.resource and "/admin" in r.resource.canonical]
    assert "ENGINE_ADMIN_PASSWORD" in caplog.text and "no default password" in caplog.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("admin", "admin"),
        basic("admin", ""),
        basic("admin", PASSWORD + "x"),
        basic("root", PASSWORD),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer not-a-token"},
    ],
)
async def test_wrong_or_default_credentials_get_a_basic_challenge(
    manager: QueueManager, headers: dict[str, str]
) -> None:
    async with serve_dashboard(manager) as base, aiohttp.ClientSession() as s:
        for path in ("/admin/queues", "/admin/queues/api/queues", "/admin/queues/static/app.js"):
            async with s.get(base + path, headers=headers) as r:
                assert r.status == 401
                assert r.headers["WWW-Authenticate"].startswith("Basic ")
                assert PASSWORD not in await r.text()


async def test_credentials_are_compared_with_hmac_compare_digest(
    manager: QueueManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with (
        serve_dashboard(manager) as base,
        aiohttp.ClientSession() as s,
        s.get(base + "/admin/queues/api/session", headers=ADMIN) as r,
    ):
        assert r.status == 200
    assert (PASSWORD.encode(), PASSWORD.encode()) in calls


async def test_page_and_session_for_the_admin_with_security_headers(
    manager: QueueManager,
) -> None:
    async with serve_dashboard(manager) as base, aiohttp.ClientSession() as s:
        async with s.get(base + "/admin/queues", headers=ADMIN) as r:
            assert r.status == 200
            assert "text/html" in r.headers["Content-Type"]
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert PASSWORD not in await r.text()
        async with s.get(base + "/admin/queues/api/session", headers=ADMIN) as r:
            body = await r.json()
            assert body["user"] == "admin" and body["admin"] is True and len(body["csrf"]) == 64


async def test_actions_need_the_csrf_token_and_a_same_origin(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    async with serve_dashboard(manager) as base, aiohttp.ClientSession() as s:
        async with s.get(base + "/admin/queues/api/session", headers=ADMIN) as r:
            csrf = (await r.json())["csrf"]
        url = base + "/admin/queues/api/queues/q/pause"
        refused = [
            ADMIN,  # no token: what a cross-site form post with ambient credentials looks like
            {**ADMIN, "X-CSRF-Token": "0" * 64},
            {**ADMIN, "X-CSRF-Token": csrf, "Origin": "https://evil.example"},
            {**ADMIN, "X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"},
        ]
        for headers in refused:
            async with s.post(url, headers=headers) as r:
                assert r.status == 403, headers
        assert not await q.is_paused()
        async with s.post(url, headers={**ADMIN, "X-CSRF-Token": csrf, "Origin": base}) as r:
            assert r.status == 200
        assert await q.is_paused()
        assert (await q.events(1))[0]["by"] == "admin"


async def test_tokens_read_but_only_admin_tokens_act(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    async with serve_dashboard(manager) as base, aiohttp.ClientSession() as s:
        viewer = {"Authorization": f"Bearer {token('viewer')}"}
        async with s.get(base + "/admin/queues/api/queues", headers=viewer) as r:
            assert r.status == 200 and (await r.json())["queues"][0]["name"] == "q"
        async with s.get(base + "/admin/queues/api/session", headers=viewer) as r:
            csrf = (await r.json())["csrf"]
        async with s.post(
            base + "/admin/queues/api/queues/q/pause", headers={**viewer, "X-CSRF-Token": csrf}
        ) as r:
            assert r.status == 403
        admin = {"Authorization": f"Bearer {token('admin', 'ops')}"}
        async with s.get(base + "/admin/queues/api/session", headers=admin) as r:
            csrf = (await r.json())["csrf"]
        async with s.post(
            base + "/admin/queues/api/queues/q/pause", headers={**admin, "X-CSRF-Token": csrf}
        ) as r:
            assert r.status == 200
    assert (await q.events(1))[0]["by"] == "ops"


async def test_live_stream_outlives_the_api_request_deadline(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    async with (
        serve_dashboard(manager, request_timeout_s=0.1) as base,
        aiohttp.ClientSession() as s,
        s.get(base + "/admin/queues/api/live", headers=ADMIN) as r,
    ):
        assert r.headers["Content-Type"].startswith("text/event-stream")
        first = await _next_event(r)
        assert first["queues"][0]["waiting"] == 0
        await asyncio.sleep(0.3)  # well past the API's per-request deadline
        for _ in range(3):
            await q.add({"n": 1})
        # Snapshots follow the events; the counts reach 3 (intermediate ones may merge).
        while (await _next_event(r))["queues"][0]["waiting"] != 3:
            pass


async def _next_event(r: aiohttp.ClientResponse) -> dict[str, Any]:
    import orjson

    data = b""
    async for line in r.content:
        if line.startswith(b"data: "):
            data = line[6:]
        elif line == b"\n" and data:
            return orjson.loads(data)  # type: ignore[no-any-return]
    raise AssertionError("stream ended")


@pytest.mark.parametrize(
    "password",
    [
        "x",
        "short-pw-1",
        "aaaaaaaaaaaaaaaa",
        "abababababababab",
        "my-admin-is-great",
        "Password2024!",
    ],
)
def test_a_weak_password_is_refused_at_startup(manager: QueueManager, password: str) -> None:
    with pytest.raises(ValueError, match="ENGINE_ADMIN_PASSWORD is too weak"):
        setup_dashboard(web.Application(), manager, env={"ENGINE_ADMIN_PASSWORD": password})


def test_a_generated_password_is_strong_enough(manager: QueueManager) -> None:
    import secrets

    env = {"ENGINE_ADMIN_PASSWORD": secrets.token_urlsafe(16)}
    assert setup_dashboard(web.Application(), manager, env=env) is True


async def test_failed_logins_are_logged_without_the_password(
    manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="engine.dashboard")
    guess = "hunter2-guess-xyz"
    async with serve_dashboard(manager) as base, aiohttp.ClientSession() as s:
        async with s.get(base + "/admin/queues") as r:  # a browser's first, bare request
            assert r.status == 401
        assert "login failed" not in caplog.text
        async with s.get(base + "/admin/queues", headers=basic("root\nfake line", guess)) as r:
            assert r.status == 401
    [line] = [r.getMessage() for r in caplog.records if "login failed" in r.getMessage()]
    assert "'root\\nfake line'" in line and "127.0.0.1" in line  # quoted: no log injection
    assert guess not in caplog.text


async def test_repeated_failures_lock_the_address_out(manager: QueueManager) -> None:
    async with serve_dashboard(manager) as base, aiohttp.ClientSession() as s:
        statuses = []
        for i in range(300):
            async with s.get(
                base + "/admin/queues/api/queues", headers=basic("admin", f"g{i}")
            ) as r:
                statuses.append(r.status)
                retry_after = r.headers.get("Retry-After")
        assert statuses[:5] == [401] * 5  # a few typos are free
        # then locked out: no credential is checked until the lockout (1 s, doubling per
        # failure) has passed, so of 300 guesses only a handful are ever checked
        assert set(statuses) == {401, 429} and statuses.count(401) <= 15
        assert retry_after is not None and int(retry_after) >= 1

        # while locked out, the right password gets the same answer: right after a failure
        # that was checked (so a fresh lockout of at least 2 s has just begun)
        async def checked_failure() -> bool:
            async with s.get(base + "/admin/queues/api/queues", headers=basic("admin", "x")) as r:
                return r.status == 401

        await wait_for(checked_failure, timeout_s=120, interval_s=0.05)
        async with s.get(base + "/admin/queues/api/queues", headers=ADMIN) as r:
            assert r.status == 429
            assert (await r.json())["error"].startswith("too many failed logins")


def test_the_lockout_grows_expires_resets_and_is_bounded() -> None:
    from engine.api.dashboard.throttle import LoginThrottle

    now = [0.0]
    throttle = LoginThrottle(
        free_failures=2, base_s=1, max_s=8, max_addresses=50, clock=lambda: now[0]
    )
    for _ in range(2):
        throttle.failed("a")
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    assert throttle.retry_after("a") == 1
    waits = []
    for _ in range(5):
        throttle.failed("a")
        waits.append(throttle.retry_after("a"))
    assert waits == [2, 4, 8, 8, 8]  # doubling, capped
    assert throttle.retry_after("b") == 0  # per address
    now[0] += 8
    assert throttle.retry_after("a") == 0  # expired
    throttle.succeeded("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 0  # a success started the count again
    for i in range(10_000):  # a client rotating addresses
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) <= 50


async def test_every_schedule_action_needs_the_csrf_token(manager: QueueManager) -> None:
    manager.create_queue("q")
    body = {"queue": "q", "cron": "0 3 * * *"}
    one = "/admin/queues/api/queues/q/schedules/s"
    calls = [
        ("PUT", "/admin/queues/api/schedules/s", body),
        ("POST", one + "/pause", {}),
        ("POST", one + "/resume", {}),
        ("POST", one + "/run", {}),
        ("DELETE", one, None),
    ]
    key = manager.store.keys("q").schedule("s")
    async with serve_dashboard(manager) as base, aiohttp.ClientSession() as s:
        async with s.get(base + "/admin/queues/api/session", headers=ADMIN) as r:
            csrf = (await r.json())["csrf"]
        for method, path, payload in calls:
            for headers in (
                ADMIN,
                {**ADMIN, "X-CSRF-Token": csrf, "Origin": "https://evil.example"},
            ):
                async with s.request(method, base + path, headers=headers, json=payload) as r:
                    assert r.status == 403, (method, path, headers)
        assert not await manager.client.exists(key)
        good = {**ADMIN, "X-CSRF-Token": csrf, "Origin": base}
        statuses = []
        for method, path, payload in calls:
            async with s.request(method, base + path, headers=good, json=payload) as r:
                statuses.append(r.status)
        assert statuses == [200] * len(calls)
        assert not await manager.client.exists(key)  # the last call deleted it
        # A preview writes nothing and answers the field a draft gets wrong.
        async with s.post(base + "/admin/queues/api/schedule-preview", headers=good,
                          json={**body, "cron": "0 25 * * *"}) as r:  # fmt: skip
            assert r.status == 400 and (await r.json())["field"] == "cron"
    events = [f for _, f in await manager.client.xrange(manager.store.keys("q").events)]
    assert [(f.get("action") or f["event"]) for f in events if f.get("by") == "admin"] == [
        "created", "paused", "resumed", "manual", "removed"
    ]  # fmt: skip


async def test_a_declared_schedule_cannot_be_changed_or_deleted_from_the_dashboard(
    manager: QueueManager,
) -> None:
    manager.create_queue("q")
    await upsert_schedule(manager.store, define_schedule("nightly", "q", cron="0 4 * * *"))
    async with serve_dashboard(manager) as base, aiohttp.ClientSession() as s:
        async with s.get(base + "/admin/queues/api/session", headers=ADMIN) as r:
            good = {**ADMIN, "X-CSRF-Token": (await r.json())["csrf"]}
        async with s.get(base + "/admin/queues/api/schedules", headers=ADMIN) as r:
            [listed] = (await r.json())["schedules"]
            assert listed["source"] == "declared" and listed["definition"]["cron"] == "0 4 * * *"
        async with s.put(base + "/admin/queues/api/schedules/nightly", headers=good,
                         json={"queue": "q", "cron": "0 5 * * *"}) as r:  # fmt: skip
            assert r.status == 409 and "engine.toml" in (await r.json())["error"]
        async with s.delete(base + "/admin/queues/api/queues/q/schedules/nightly",
                            headers=good) as r:  # fmt: skip
            assert r.status == 409
    assert await manager.client.exists(manager.store.keys("q").schedule("nightly"))

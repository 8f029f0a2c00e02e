"""Alerts: each rule opens one incident and closes it once, delivered to a local webhook
receiver (retried with backoff) and the log; several instances deliver each notice once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine import QueueManager
from engine.alerts import AlertConfig, AlertManager, WebhookConfig
from engine.connection import RedisSettings
from engine.metrics import Event, EventFeed
from tests.helpers import wait_for
from tests.monitoring import add_event, claim, complete, fail, redis_now_ms, run_one
from tests.redis_servers import RedisServer


@dataclass
class Receiver:
    url: str
    notices: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    attempts: int = 0

    def by(self, status: str) -> list[dict[str, Any]]:
        return [n for n in self.notices if n["status"] == status]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        rec.attempts += 1
        if rec.fail_next:
            rec.fail_next -= 1
            return web.Response(status=503)
        rec.notices.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hook?token=hook-secret"
    yield rec
    await runner.cleanup()


Started = Callable[..., Any]


@pytest.fixture
async def started() -> AsyncIterator[Started]:
    """Start alert managers, each with its own feed; all stopped after the test."""
    running: list[tuple[EventFeed, AlertManager]] = []

    async def start(manager: QueueManager, config: AlertConfig, name: str = "i1") -> AlertManager:
        feed = EventFeed(manager, block_ms=50)
        alerts = AlertManager(manager, config, instance_id=name)
        feed.subscribe(alerts.observe)
        await alerts.start()
        await feed.start()
        running.append((feed, alerts))
        return alerts

    start.managers = []  # type: ignore[attr-defined]  # closed after the feeds stop
    yield start
    for feed, alerts in running:
        await feed.stop()
        await alerts.stop()
    for m in start.managers:  # type: ignore[attr-defined]
        await m.close_all()


def config(receiver: Receiver, **kwargs: Any) -> AlertConfig:
    hook = WebhookConfig(receiver.url, backoff_s=0.01, max_backoff_s=0.05, timeout_s=2)
    values: dict[str, Any] = {"check_interval_s": 0.05, "stalled_after_s": 0, **kwargs}
    return AlertConfig(webhooks=(hook,), **values)


async def settle(receiver: Receiver, q: Any, marker: str) -> None:
    """Deliveries are in order: once a marker incident arrives, every earlier notice has."""
    await add_event(q, event="missed", schedule=marker, tick=1, reason="misfire")
    await wait_for(lambda: _async([n for n in receiver.notices if n["schedule"] == marker]))


async def _async(value: Any) -> Any:
    return value


async def test_consecutive_failures_alert_once_then_recover_once(
    manager: QueueManager, receiver: Receiver, started: Started, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="engine.alerts")
    q = manager.create_queue("serpram-sync")
    await started(manager, config(receiver, consecutive_failures=3))
    receiver.fail_next = 2  # the first delivery is retried with backoff
    for _ in range(6):
        await run_one(q, ok=False)
    await wait_for(lambda: _async(receiver.by("firing")))
    await run_one(q, ok=True)
    await wait_for(lambda: _async(receiver.by("resolved")))
    await settle(receiver, q, "marker")
    firing = [n for n in receiver.notices if n["rule"] == "consecutive_failures"]
    assert [n["status"] for n in firing] == ["firing", "resolved"]
    assert firing[0]["queue"] == "serpram-sync" and "3 consecutive" in firing[0]["summary"]
    assert firing[1]["endsAt"] is not None
    assert receiver.attempts >= 3  # two refusals, then accepted
    messages = [r.getMessage() for r in caplog.records]
    assert any("ALERT firing [consecutive_failures]" in m for m in messages)
    assert any("ALERT resolved [consecutive_failures]" in m for m in messages)
    assert not any("hook-secret" in m for m in messages)  # the URL's token is never logged


async def test_schedule_failures_and_missed_ticks_are_their_own_incidents(
    manager: QueueManager, receiver: Receiver, started: Started
) -> None:
    q = manager.create_queue("ayt-sync")
    await started(manager, config(receiver, consecutive_failures=2))
    now = await redis_now_ms(q)
    for i in range(2):
        await q.add({"n": i}, {"job_id": f"ayt:{now + i}"})
        ((job_id, token),) = await claim(q)
        await fail(q, job_id, token)
    await add_event(q, event="missed", schedule="ayt", tick=now, reason="misfire")
    await add_event(q, event="missed", schedule="ayt", tick=now + 1, reason="misfire")
    await add_event(q, event="fired", schedule="ayt", tick=now + 2, jobId=f"ayt:{now + 2}")
    await settle(receiver, q, "marker")
    keys = [(n["key"], n["status"]) for n in receiver.notices if n["schedule"] != "marker"]
    assert ("consecutive_failures:schedule:ayt-sync/ayt", "firing") in keys
    assert ("consecutive_failures:queue:ayt-sync", "firing") in keys
    missed = [s for k, s in keys if k == "missed_tick:ayt-sync/ayt"]
    assert missed == ["firing", "resolved"]  # two missed ticks, one incident


async def test_stalled_queue_alerts_and_recovers(
    manager: QueueManager, receiver: Receiver, started: Started
) -> None:
    q = manager.create_queue("stuck")
    await started(manager, config(receiver, stalled_after_s=0.2))
    await q.add({"n": 1})
    notice = (await wait_for(lambda: _async(receiver.by("firing"))))[0]
    assert notice["rule"] == "stalled_queue" and notice["queue"] == "stuck"
    ((job_id, token),) = await claim(q)
    await complete(q, job_id, token)
    await wait_for(lambda: _async(receiver.by("resolved")))
    assert [n["status"] for n in receiver.notices] == ["firing", "resolved"]


async def test_paused_queue_is_not_stalled(
    manager: QueueManager, receiver: Receiver, started: Started
) -> None:
    q = manager.create_queue("held")
    await q.pause("admin")
    alerts = await started(manager, config(receiver, stalled_after_s=0.01))
    await q.add({"n": 1})
    for _ in range(3):
        await alerts.check()
    await settle(receiver, q, "marker")
    assert [n for n in receiver.notices if n["rule"] == "stalled_queue"] == []


async def test_two_instances_deliver_each_notice_once(
    manager: QueueManager, receiver: Receiver, started: Started, redis_server: RedisServer
) -> None:
    other = QueueManager(redis_server.url, prefix=manager.prefix)
    started.managers.append(other)  # type: ignore[attr-defined]
    q = manager.create_queue("shared")
    other.create_queue("shared")
    await started(manager, config(receiver, consecutive_failures=2), "i1")
    await started(other, config(receiver, consecutive_failures=2), "i2")
    for _ in range(3):
        await run_one(q, ok=False)
    await run_one(q, ok=True)
    await wait_for(lambda: _async(receiver.by("resolved")))
    await settle(receiver, q, "marker")
    statuses = [n["status"] for n in receiver.notices if n["rule"] == "consecutive_failures"]
    assert statuses == ["firing", "resolved"]
    markers = [n for n in receiver.notices if n["schedule"] == "marker"]
    assert len(markers) == 1


async def test_redis_unreachable_alerts_and_recovers(
    redis_factory: Callable[..., RedisServer],
    prefix: str,
    receiver: Receiver,
    started: Started,
) -> None:
    server = redis_factory()
    settings = RedisSettings(url=server.url, socket_timeout_s=0.5, connect_timeout_s=0.5)
    manager = QueueManager(settings=settings, prefix=prefix)
    started.managers.append(manager)  # type: ignore[attr-defined]
    manager.create_queue("q")
    await started(manager, config(receiver, redis_down_after_s=0.1))
    server.kill()
    notice = (await wait_for(lambda: _async(receiver.by("firing"))))[0]
    assert notice["rule"] == "redis_down" and "i1" in notice["summary"]
    server.start()
    await wait_for(lambda: _async(receiver.by("resolved")))
    assert [n["status"] for n in receiver.notices] == ["firing", "resolved"]


def test_alert_config_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(
        """
[alerts]
consecutive_failures = 5
stalled_after_s = 600
missed_ticks = false
[[alerts.webhooks]]
url = "https://hooks.example.com/engine"
retries = 2
[[alerts.webhooks]]
url_env = "ALERT_HOOK"
"""
    )
    cfg = AlertConfig.load(path, env={"ALERT_HOOK": "http://127.0.0.1:9/x"})
    assert cfg.consecutive_failures == 5 and cfg.stalled_after_s == 600
    assert cfg.missed_ticks is False
    assert [h.url for h in cfg.webhooks] == [
        "https://hooks.example.com/engine",
        "http://127.0.0.1:9/x",
    ]
    assert cfg.webhooks[0].retries == 2


@pytest.mark.parametrize(
    "table,field",
    [
        ({"consecutive_failures": -1}, "alerts.consecutive_failures"),
        ({"consecutive_failures": "3"}, "alerts.consecutive_failures"),
        ({"check_interval_s": 0}, "alerts.check_interval_s"),
        ({"bogus": 1}, "bogus"),
        ({"webhooks": [{"url": "ftp://x"}]}, "url"),
        ({"webhooks": [{"url_env": "MISSING"}]}, "url_env"),
        ({"webhooks": [{"url": "http://x", "retries": -2}]}, "retries"),
        ({"webhooks": {"url": "http://x"}}, "alerts.webhooks"),
    ],
)
def test_bad_alert_config_names_the_field(table: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AlertConfig.from_table(table, env={})


def test_engine_config_reads_the_alerts_table() -> None:
    from engine.config import parse_config

    cfg = parse_config({"alerts": {"consecutive_failures": 5, "missed_ticks": False}})
    assert cfg.alerts.consecutive_failures == 5 and cfg.alerts.missed_ticks is False
    assert parse_config({}).alerts == AlertConfig()
    with pytest.raises(ValueError, match=r"alerts\.stalled_after_s"):
        parse_config({"alerts": {"stalled_after_s": -1}})


async def test_an_instance_that_sees_an_incident_late_cannot_reopen_it(
    manager: QueueManager, receiver: Receiver
) -> None:
    cfg = config(receiver, consecutive_failures=2)
    fast = AlertManager(manager, cfg, instance_id="fast")
    slow = AlertManager(manager, cfg, instance_id="slow")
    await fast.start()
    await slow.start()
    try:
        failures = [
            Event("q", f"{1000 + i}-0", {"event": "failed", "jobId": str(i)}) for i in range(2)
        ]
        recovery = Event("q", "1002-0", {"event": "completed", "jobId": "9", "duration": "1"})
        fast.observe([*failures, recovery])
        await wait_for(lambda: _async(receiver.by("resolved")))
        slow.observe(failures)  # the same failures, read after the incident closed
        slow.observe([Event("q", "1003-0", {"event": "missed", "schedule": "marker", "tick": "1"})])
        await wait_for(lambda: _async([n for n in receiver.notices if n["schedule"] == "marker"]))
        statuses = [n["status"] for n in receiver.notices if n["rule"] == "consecutive_failures"]
        assert statuses == ["firing", "resolved"]
    finally:
        await fast.stop()
        await slow.stop()

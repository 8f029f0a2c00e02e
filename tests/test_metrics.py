"""/metrics: state read at scrape time, flow counted from the events streams, parsed by
prometheus-client's own parser."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from engine import QueueManager
from engine.metrics import FEED, Event, EventFeed, schedule_of, setup_metrics
from tests.helpers import wait_for
from tests.monitoring import add_event, claim, redis_now_ms, run_one
from tests.redis_servers import RedisServer

GRAFANA = Path(__file__).resolve().parent.parent / "grafana" / "engine-dashboard.json"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


@pytest.fixture
async def served(manager: QueueManager) -> AsyncIterator[str]:
    app = web.Application()
    setup_metrics(app, manager, env={})
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def scrape(base: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"{base}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return await r.text()


async def test_metrics_report_jobs_by_state_leader_and_redis_up(
    manager: QueueManager, served: str
) -> None:
    q = manager.create_queue("serpram-sync")
    manager.create_queue("ayt-sync")
    await q.add({"a": 1})
    await q.add({"a": 2}, {"delay": 60_000})
    await manager.client.set(q.keys.lease, "host-1:42/abc123")
    await manager.client.hset(q.keys.meta, "leaderEpoch", 3)
    text = await scrape(served)
    assert value(text, "engine_queue_jobs", queue="serpram-sync", state="waiting") == 1
    assert value(text, "engine_queue_jobs", queue="serpram-sync", state="delayed") == 1
    assert value(text, "engine_queue_jobs", queue="ayt-sync", state="waiting") == 0
    assert value(text, "engine_queue_paused", queue="serpram-sync") == 0
    assert value(text, "engine_scheduler_leader", queue="serpram-sync", instance="host-1:42") == 1
    assert value(text, "engine_scheduler_leader_epoch", queue="serpram-sync") == 3
    assert value(text, "engine_redis_up") == 1
    await q.pause("admin")
    text = await scrape(served)
    assert value(text, "engine_queue_paused", queue="serpram-sync") == 1
    assert value(text, "engine_queue_jobs", queue="serpram-sync", state="paused") == 1


async def test_flow_metrics_count_completions_failures_durations_and_lateness(
    manager: QueueManager, served: str
) -> None:
    q = manager.create_queue("q")
    for _ in range(3):
        await run_one(q)
    await run_one(q, ok=False)
    now = await redis_now_ms(q)
    await add_event(q, f"{now + 5000}-0", event="fired", schedule="tick", tick=now + 4750)
    await add_event(q, event="missed", schedule="tick", tick=now, reason="misfire")

    async def flow_seen() -> str | None:
        text = await scrape(served)
        return (
            text
            if value(text, "engine_cron_missed_ticks_total", queue="q", schedule="tick")
            else None
        )

    text = await wait_for(flow_seen)
    assert value(text, "engine_jobs_completed_total", queue="q") == 3
    assert value(text, "engine_jobs_failed_total", queue="q") == 1
    assert value(text, "engine_job_duration_seconds_count", queue="q") == 3
    assert value(text, "engine_events_total", queue="q", event="active") == 4
    lateness = {"queue": "q", "schedule": "tick"}
    assert value(text, "engine_cron_lateness_seconds_count", **lateness) == 1
    assert value(text, "engine_cron_lateness_seconds_sum", **lateness) == pytest.approx(0.25)
    assert value(text, "engine_cron_lateness_seconds_bucket", le="0.1", **lateness) == 0
    assert value(text, "engine_cron_lateness_seconds_bucket", le="0.25", **lateness) == 1


async def test_metrics_say_redis_is_down_and_still_answer(
    redis_factory: Callable[..., RedisServer], prefix: str
) -> None:
    server = redis_factory()
    manager = QueueManager(server.url, prefix=prefix)
    manager.create_queue("q")
    app = web.Application()
    metrics = setup_metrics(app, manager, env={})
    assert (await _render(metrics)) and value(await _render(metrics), "engine_redis_up") == 1
    server.kill()
    text = await _render(metrics)
    assert value(text, "engine_redis_up") == 0
    await manager.close_all()


async def _render(metrics: object) -> str:
    return (await metrics.render()).decode()  # type: ignore[attr-defined]


async def test_metrics_token_is_required_when_configured(manager: QueueManager) -> None:
    app = web.Application()
    setup_metrics(app, manager, env={"ENGINE_METRICS_TOKEN": "s3cret-token"})
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url) as r:
                assert r.status == 401
            async with s.get(url, headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401
            async with s.get(url, headers={"Authorization": "Bearer s3cret-token"}) as r:
                assert r.status == 200
    finally:
        await runner.cleanup()


async def test_feed_reads_only_new_events_and_picks_up_new_queues(manager: QueueManager) -> None:
    a = manager.create_queue("a")
    await a.add(1)  # before the feed starts: not delivered
    feed = EventFeed(manager)
    seen: list[Event] = []
    feed.subscribe(seen.extend)
    await feed.read_once(block=False)  # positions the feed at the tail
    assert seen == []
    await a.add(2)
    b = manager.create_queue("b")
    await feed.read_once(block=False)  # b is new: starts at its tail
    await b.add(3)
    await feed.read_once(block=False)
    assert [(e.queue, e.kind, e.fields.get("jobId")) for e in seen] == [
        ("a", "waiting", "2"),
        ("b", "waiting", "1"),
    ]


async def test_feed_keeps_running_when_a_listener_raises(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    feed = EventFeed(manager, block_ms=50)
    seen: list[Event] = []

    def broken(_: object) -> None:
        raise RuntimeError("listener bug")

    feed.subscribe(broken)
    feed.subscribe(seen.extend)
    await feed.start()
    try:
        await q.add(1)
        await claim(q)
        await wait_for(lambda: _ready(len(seen) >= 2))
        assert feed.running
    finally:
        await feed.stop()


async def _ready(flag: bool) -> bool:
    return flag


def test_schedule_of_recognises_cron_job_ids_only() -> None:
    assert schedule_of("serpram:1731887100000") == "serpram"
    assert schedule_of("a:b:1731887100000") == "a:b"
    assert schedule_of("12") is None
    assert schedule_of("fixed-id:123") is None


def test_setup_metrics_shares_one_feed_per_app(manager: QueueManager) -> None:
    app = web.Application()
    setup_metrics(app, manager, env={})
    feed = app[FEED]
    from engine.metrics import feed_of

    assert feed_of(app, manager) is feed


async def test_grafana_dashboard_only_uses_metrics_the_engine_exports(
    manager: QueueManager, served: str
) -> None:
    q = manager.create_queue("q")
    await run_one(q)
    now = await redis_now_ms(q)
    await add_event(q, event="fired", schedule="s", tick=now)
    await add_event(q, event="missed", schedule="s", tick=now, reason="misfire")

    async def exported() -> set[str] | None:
        text = await scrape(served)
        names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
        # Families with no sample yet (no failure, no leader) are declared all the same.
        suffixes = ("", "_total", "_bucket", "_count", "_sum")
        names |= {f.name + x for f in text_string_to_metric_families(text) for x in suffixes}
        return names if "engine_cron_missed_ticks_total" in names else None

    names = await wait_for(exported)
    exprs = [t["expr"] for p in json.loads(GRAFANA.read_text())["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bengine_[a-z_]+", e)}
    assert used and used <= names, used - names

"""Schedules that heal: declared ones registered again after a data loss, unreadable ones
set aside, and what health says meanwhile (#12 items 1, 3, 7), in-process."""

from __future__ import annotations

import orjson
import pytest
from test_api_helpers import serve

from engine.api.handlers.health import STARTED_AT
from engine.lock import LeaseConfig
from engine.scheduler import (
    define_schedule,
    get_schedule_state,
    server_time_ms,
    upsert_schedule,
)
from tests.helpers import wait_for

# A long renewal interval: the registration check runs at start, then only when poked.
SLOW = LeaseConfig(ttl_ms=30_000, renew_interval_ms=10_000, margin_ms=1000)
FAST = LeaseConfig(ttl_ms=1500, renew_interval_ms=500, margin_ms=300)


async def health(api):
    status, body, _ = await api.call("GET", "/api/queues/health", headers={})
    return status, body


async def events(manager, queue="q"):
    return [f for _, f in await manager.client.xrange(manager.store.keys(queue).events)]


async def declare(manager, definition, lease):
    result = await upsert_schedule(manager.store, definition)
    scheduler = manager.start_scheduler(definition.queue, lease)
    scheduler.declare(definition, result.stored_at_ms)
    return scheduler


async def _leads(scheduler):
    return scheduler.lease.is_leader


async def lose_everything(manager, queue="q"):
    """What a restart without persistence or FLUSHALL does to this queue's keys."""
    keys = await manager.client.keys(f"{manager.prefix}:{{{queue}}}:*")
    await manager.client.delete(*keys)


async def test_a_declared_schedule_lost_with_the_data_is_registered_again(manager):
    d = define_schedule("tick", "q", every_ms=100)
    manager.create_queue("q")
    scheduler = await declare(manager, d, FAST)
    k = manager.store.keys("q")
    await wait_for(lambda: manager.client.exists(k.schedule_ledger("tick")))
    await lose_everything(manager)
    # Within one lease TTL (the check runs every renewal interval) it is back and firing.
    await wait_for(lambda: manager.client.exists(k.schedule_ledger("tick")), timeout_s=3)
    assert await manager.client.hget(k.schedule("tick"), "fp") == d.fingerprint()
    actions = [f["action"] for f in await events(manager) if f["event"] == "schedule"]
    assert actions[:2] == ["missing", "restored"]
    assert scheduler.declared.restored == 1


async def test_health_is_degraded_while_a_declared_schedule_is_missing(manager):
    d = define_schedule("tick", "q", every_ms=60_000)
    manager.create_queue("q")
    scheduler = await declare(manager, d, SLOW)
    async with serve(manager) as api:
        await wait_for(lambda: _leads(scheduler))
        status, body = await health(api)
        assert (status, body["status"]) == (200, "healthy")
        await lose_everything(manager)
        status, body = await health(api)
        assert (status, body["status"]) == (200, "degraded")
        assert {"queue": "q", "reason": "schedule_missing", "schedule": "tick"} in body["issues"]
        scheduler._next_check = 0.0  # the next renewal's check, now
        scheduler.wake()
        await wait_for(lambda: manager.client.exists(manager.store.keys("q").schedule("tick")))
        _, body = await health(api)
        assert not [i for i in body["issues"] if i["reason"] == "schedule_missing"]


async def test_an_existing_declared_schedule_is_never_moved(manager):
    d = define_schedule("tick", "q", cron="0 0 1 1 *")
    manager.create_queue("q")
    k = manager.store.keys("q")
    scheduler = await declare(manager, d, SLOW)
    await manager.client.hset(k.schedule("tick"), "next", 12345)
    assert await scheduler.declared.check() == []
    assert await manager.client.hget(k.schedule("tick"), "next") == "12345"


async def test_a_stale_copy_is_replaced_and_a_newer_registration_is_left_alone(manager):
    ours = define_schedule("tick", "q", cron="0 0 1 1 *")
    other = define_schedule("tick", "q", cron="0 0 2 1 *")
    manager.create_queue("q")
    k = manager.store.keys("q")
    scheduler = await declare(manager, ours, SLOW)
    await wait_for(lambda: _leads(scheduler))  # its own first check is done
    stored_at = int(await manager.client.hget(k.schedule("tick"), "updated"))
    # A replica that missed our registration: another definition, written before it.
    await upsert_schedule(manager.store, other)
    await manager.client.hset(k.schedule("tick"), "updated", stored_at - 1)
    assert await scheduler.declared.check() == ["tick"]
    assert await manager.client.hget(k.schedule("tick"), "fp") == ours.fingerprint()
    # A newer deploy (or an operator) registers another definition: not ours to undo.
    await upsert_schedule(manager.store, other)
    assert await scheduler.declared.check() == []
    assert await manager.client.hget(k.schedule("tick"), "fp") == other.fingerprint()


# -- item 3: one unreadable schedule does not block its queue ---------------------------------


async def _write_unreadable(manager, how: str) -> None:
    """A schedule as a newer instance (other tzdata, newer format) would have stored it."""
    k = manager.store.keys("q")
    d = define_schedule("bad", "q", every_ms=1000)
    raw = d.to_dict()
    if how == "zone":
        raw["schedule"] = {**raw["schedule"], "every_ms": None, "cron": "* * * * *",
                           "tz": "Mars/Olympus_Mons"}  # fmt: skip
        text = orjson.dumps(raw).decode()
    elif how == "field":
        raw["schedule"] = {**raw["schedule"], "jitter_ms": 500}
        text = orjson.dumps(raw).decode()
    else:
        text = "{not json"
    past = await server_time_ms(manager.store) - 60_000
    await manager.client.hset(k.schedule("bad"), mapping={
        "def": text, "fp": "f" * 32, "next": past, "jobName": "bad", "data": "null",
        "opts": "{}", "pri": 0, "overlap": "allow"})  # fmt: skip
    await manager.client.zadd(k.schedules, {"bad": past})


@pytest.mark.parametrize("how", ["zone", "field", "json"])
async def test_an_unreadable_schedule_is_set_aside_and_its_neighbours_fire(manager, how):
    manager.create_queue("q")
    await _write_unreadable(manager, how)
    await upsert_schedule(manager.store, define_schedule("good", "q", every_ms=100))
    scheduler = manager.start_scheduler("q", FAST)
    k = manager.store.keys("q")
    await wait_for(lambda: _fired(manager, "good", 3), timeout_s=5)
    assert await manager.client.sismember(k.schedules_aside, "bad")
    assert scheduler.aside == ["bad"]
    aside = [f for f in await events(manager) if f.get("action") == "set_aside"]
    assert len(aside) == 1 and aside[0]["schedule"] == "bad"
    state = await get_schedule_state(manager.store, "q", "bad")
    assert state.set_aside and state.to_dict()["setAside"] == state.set_aside
    if how == "zone":
        assert "Mars/Olympus_Mons" in state.set_aside
    async with serve(manager) as api:
        _, body = await health(api)
    assert body["status"] == "degraded"
    assert {"queue": "q", "reason": "schedules_set_aside", "count": 1} in body["issues"]


async def test_a_schedule_set_aside_comes_back_when_redefined(manager):
    manager.create_queue("q")
    await _write_unreadable(manager, "zone")
    scheduler = manager.start_scheduler("q", FAST)
    k = manager.store.keys("q")
    await wait_for(lambda: manager.client.sismember(k.schedules_aside, "bad"))
    await upsert_schedule(manager.store, define_schedule("bad", "q", every_ms=100))
    await wait_for(lambda: _fired(manager, "bad", 1), timeout_s=5)
    assert "bad" not in scheduler.aside


async def _fired(manager, name, n):
    k = manager.store.keys("q")
    ledger = await manager.client.xrange(k.schedule_ledger(name))
    return sum(1 for _, f in ledger if f["kind"] == "fired") >= n


# -- item 7: `starting` before the first lease is taken -------------------------------------


async def test_health_says_starting_not_degraded_during_the_first_lease_ttl(manager, client):
    manager.create_queue("q")
    now = await server_time_ms(manager.store)
    await client.zadd(manager.store.keys("q").schedules, {"tick": now + 60_000})
    async with serve(manager) as api:
        status, body = await health(api)
        assert (status, body["status"]) == (200, "starting")
        assert body["issues"] == [{"queue": "q", "reason": "starting", "count": 1}]
        assert api.app is not None
        api.app[STARTED_AT].at -= 3600  # one lease TTL later, still no leader
        status, body = await health(api)
        assert (status, body["status"]) == (200, "degraded")
        assert body["issues"] == [{"queue": "q", "reason": "no_leader", "count": 1}]


async def test_the_starting_window_follows_this_instances_scheduler(manager, client):
    d = define_schedule("tick", "q", every_ms=60_000)
    manager.create_queue("q")
    scheduler = await declare(manager, d, SLOW)
    await wait_for(lambda: _leads(scheduler))
    async with serve(manager) as api:
        api.app[STARTED_AT].at -= 3600
        await client.delete(manager.store.keys("q").lease)  # not taken yet, as at start
        _, body = await health(api)
        assert body["status"] == "starting"
        scheduler.started_at -= 3600
        _, body = await health(api)
        assert body["status"] == "degraded"


async def test_a_metric_and_an_alert_say_missing_and_again_restored(manager):
    from engine.alerts import FIRING, RESOLVED, AlertConfig, AlertManager
    from engine.metrics import EngineMetrics, Event

    d = define_schedule("tick", "q", every_ms=60_000)
    manager.create_queue("q")
    scheduler = await declare(manager, d, SLOW)
    await wait_for(lambda: _leads(scheduler))
    metrics = EngineMetrics(manager)
    alerts = AlertManager(manager, AlertConfig(), instance_id="i1")

    def registered() -> float | None:
        return metrics.registry.get_sample_value(
            "engine_schedule_registered", {"queue": "q", "schedule": "tick"}
        )

    await metrics.refresh()
    await alerts.check()
    assert registered() == 1 and "schedule_missing:q/tick" not in alerts.open
    await lose_everything(manager)
    await metrics.refresh()
    await alerts.check()
    assert registered() == 0
    status, key, incident = alerts._transitions.get_nowait()
    assert (status, key, incident.rule) == (FIRING, "schedule_missing:q/tick", "schedule_missing")
    scheduler._next_check = 0.0
    scheduler.wake()
    await wait_for(lambda: manager.client.exists(manager.store.keys("q").schedule("tick")))
    await metrics.refresh()
    await alerts.check()
    assert registered() == 1
    assert alerts._transitions.get_nowait()[:2] == (RESOLVED, "schedule_missing:q/tick")
    restored = [
        Event("q", i, f) for i, f in await manager.client.xrange(manager.store.keys("q").events)
    ]
    metrics.observe(restored)
    sample = {"queue": "q", "schedule": "tick"}
    assert metrics.registry.get_sample_value("engine_schedule_restored_total", sample) == 1


# -- item 4: a retried run-now does not enqueue twice ------------------------------------------


async def test_rest_run_now_with_an_idempotency_key_returns_the_first_job(manager):
    from engine import schedulers
    from engine.service import declared_schedules, run_targets

    serpram = schedulers.SERPRAM
    manager.create_queue(serpram.queue)
    await upsert_schedule(manager.store, serpram.definition)
    from engine.config import EngineConfig

    targets = run_targets(manager, declared_schedules(EngineConfig()))
    async with serve(manager, run_targets=targets) as api:
        path = "/api/queues/serpram/run"
        hdrs = {**api.headers("admin"), "Idempotency-Key": "0b7c6f1e-run-1"}
        s1, first, _ = await api.call("POST", path, headers=hdrs, json={})
        s2, again, _ = await api.call("POST", path, headers=hdrs, json={})
        s3, plain, _ = await api.call("POST", path, json={})
        assert (s1, s2, s3) == (200, 200, 200)
        assert first["jobId"] == again["jobId"] != plain["jobId"]
        bad = {**api.headers("admin"), "Idempotency-Key": "x" * 256}
        status, body, _ = await api.call("POST", path, headers=bad, json={})
        assert status == 400 and body["field"] == "Idempotency-Key"
    k = manager.store.keys(serpram.queue)
    assert await manager.client.llen(k.wait) == 2

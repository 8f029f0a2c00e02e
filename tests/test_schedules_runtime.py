"""Schedules at run time (#14 item 1): the Python API and the REST routes."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from test_api_helpers import serve

from engine import QueueManager, schedulers
from engine.keys import validate_queue_name
from engine.lock import LeaseConfig
from engine.scheduler import define_schedule, upsert_schedule
from engine.scheduler.admin import ScheduleIsDeclared
from tests.helpers import wait_for

LEASE = LeaseConfig(ttl_ms=1500, renew_interval_ms=500, margin_ms=300)


async def ledger(manager, queue, name):
    entries = await manager.client.xrange(manager.store.keys(queue).schedule_ledger(name))
    return [(int(f["tick"]), f["kind"]) for _, f in entries]


async def _fired(manager, queue, name, n):
    return sum(1 for _, kind in await ledger(manager, queue, name) if kind == "fired") >= n


async def test_three_instances_upserting_at_once_make_one_schedule_fired_once_per_tick(
    redis_server, prefix
):
    managers = [QueueManager(redis_server.url, prefix=prefix) for _ in range(3)]
    try:
        results = await asyncio.gather(*(
            schedulers.upsert("report", queue="q", every_ms=100, manager=m) for m in managers
        ))  # fmt: skip
        assert sorted(r.action for r in results) == ["created", "unchanged", "unchanged"]
        assert len(managers[0].schedulers) == 1  # each instance contends for the lease
        m = managers[0]
        assert await m.client.zrange(m.store.keys("q").schedules, 0, -1) == ["report"]
        await wait_for(lambda: _fired(m, "q", "report", 10), timeout_s=10)
        ticks = [t for t, kind in await ledger(m, "q", "report") if kind == "fired"]
        assert ticks == list(range(ticks[0], ticks[-1] + 1, 100))  # each tick exactly once
    finally:
        for m in managers:
            await m.close_all()


async def test_pausing_one_schedule_leaves_its_queue_and_its_neighbours_running(manager):
    done: list[str] = []

    async def handler(job):
        done.append(job.id)

    await schedulers.upsert("a", queue="q", every_ms=100, manager=manager)
    await schedulers.upsert("b", queue="q", every_ms=100, manager=manager)
    await manager.process("q", handler)
    await wait_for(lambda: _fired(manager, "q", "a", 2))
    assert await schedulers.pause_schedule("a", queue="q", manager=manager, actor="ops")
    paused_at = len([1 for _, k in await ledger(manager, "q", "a") if k == "fired"])
    b_before = len([1 for _, k in await ledger(manager, "q", "b") if k == "fired"])
    await wait_for(lambda: _fired(manager, "q", "b", b_before + 5))
    a_after = len([1 for _, k in await ledger(manager, "q", "a") if k == "fired"])
    assert a_after <= paused_at + 1  # at most a fire already on the wire
    assert not await manager.client.hexists(manager.store.keys("q").meta, "paused")
    assert any(j.startswith("b:") for j in done[-3:])  # the queue's worker keeps working
    assert await schedulers.resume_schedule("a", queue="q", manager=manager, actor="ops")
    await wait_for(lambda: _fired(manager, "q", "a", a_after + 2))


async def test_a_declared_schedule_may_be_paused_but_not_redefined_or_removed(manager):
    d = define_schedule("nightly", "q", cron="0 3 * * *")
    manager.create_queue("q")
    await upsert_schedule(manager.store, d)  # as init_scheduler registers it
    with pytest.raises(ScheduleIsDeclared):
        await schedulers.upsert("nightly", queue="q", cron="0 4 * * *", manager=manager)
    with pytest.raises(ScheduleIsDeclared):
        await schedulers.remove_schedule("nightly", queue="q", manager=manager)
    assert await schedulers.pause_schedule("nightly", queue="q", manager=manager)
    # A restart registers the declared definition again: the pause stays.
    await upsert_schedule(manager.store, d)
    assert await manager.client.hget(manager.store.keys("q").schedule("nightly"), "paused")


async def test_rest_pause_resume_run_and_delete_one_schedule(manager):
    manager.create_queue("q")
    await schedulers.upsert("report", queue="q", cron="0 3 * * *", manager=manager)
    await upsert_schedule(manager.store, define_schedule("nightly", "q", cron="0 4 * * *"))
    async with serve(manager) as api:
        status, body, _ = await api.call("POST", "/api/schedules/report/pause", json={})
        assert status == 200 and body["changed"] and body["schedule"]["paused"]
        status, body, _ = await api.call("POST", "/api/schedules/report/pause", json={})
        assert status == 200 and not body["changed"]
        status, body, _ = await api.call("POST", "/api/schedules/report/resume", json={})
        assert status == 200 and body["changed"] and not body["schedule"]["paused"]
        hdrs = {**api.headers("admin"), "Idempotency-Key": "k-1"}
        _, first, _ = await api.call("POST", "/api/schedules/report/run", headers=hdrs, json={})
        _, again, _ = await api.call("POST", "/api/schedules/report/run", headers=hdrs, json={})
        assert first["jobId"] == again["jobId"]
        status, _, _ = await api.call("POST", "/api/schedules/report/pause", role="viewer")
        assert status == 403
        status, body, _ = await api.call("DELETE", "/api/schedules/nightly")
        assert status == 409  # declared in the config
        status, body, _ = await api.call("DELETE", "/api/schedules/report?queue=q")
        assert status == 200
        status, _, _ = await api.call("POST", "/api/schedules/report/pause", json={})
        assert status == 404
    events = [f for _, f in await manager.client.xrange(manager.store.keys("q").events)]
    audit = [(f.get("action") or f["event"], f.get("by")) for f in events
             if f.get("schedule") == "report" and f.get("by")]  # fmt: skip
    assert audit == [("paused", "tester"), ("resumed", "tester"), ("manual", "tester"),
                     ("removed", "tester")]  # fmt: skip


# -- #14 item 2: the seed's `repeat` option -------------------------------------------------


async def test_three_instances_adding_a_repeat_job_at_boot_make_one_schedule(redis_server, prefix):
    managers = [QueueManager(redis_server.url, prefix=prefix) for _ in range(3)]
    for m in managers:
        m.create_queue("serpram-sync")
    opts = {"jobId": "serpram-recurring", "repeat": {"every": 100}, "attempts": 3}
    try:
        jobs = await asyncio.gather(*(
            m.add_job("serpram-sync", {"source": "seed"}, opts) for m in managers
        ))  # fmt: skip
        assert len({j.id for j in jobs}) == 1 and jobs[0].id.startswith("serpram-recurring:")
        m = managers[0]
        k = m.store.keys("serpram-sync")
        assert await m.client.zrange(k.schedules, 0, -1) == ["serpram-recurring"]
        await wait_for(lambda: _fired(m, "serpram-sync", "serpram-recurring", 8), timeout_s=10)
        ticks = [t for t, kind in await ledger(m, "serpram-sync", "serpram-recurring")
                 if kind == "fired"]  # fmt: skip
        assert ticks == list(range(ticks[0], ticks[-1] + 1, 100))
        fired = await m.get_job("serpram-sync", f"serpram-recurring:{ticks[0]}")
        assert fired is not None and fired.data == {"source": "seed"}
        assert fired.opts.attempts == 3
    finally:
        for m in managers:
            await m.close_all()


@pytest.mark.parametrize(
    "repeat, message",
    [
        ({"cron": "*/5 * * * *", "every": 1000}, "exactly one"),
        ({"limit": 0, "every": 1000}, "repeat.limit"),
        ({"limit": True, "every": 1000}, "repeat.limit"),
        ({"every": 1000, "tz": 5}, "tz"),
        ({"cron": "nope"}, "cron"),
        ({"every": 1000, "endDate": "yesterday"}, "endDate"),
    ],
)
async def test_a_bad_repeat_option_names_the_field(manager, repeat, message):
    manager.create_queue("q")
    with pytest.raises(ValueError, match=message):
        await manager.add_job("q", None, {"jobId": "r", "repeat": repeat})


async def test_repeat_with_cron_tz_and_end_date(manager):
    manager.create_queue("q")
    opts = {"jobId": "r", "repeat": {"pattern": "0 9 * * 1", "tz": "Europe/Madrid",
                                     "endDate": "2100-01-01T00:00:00Z"}}  # fmt: skip
    job = await manager.add_job("q", {"n": 1}, opts)
    state = await schedulers.get_schedule_state(manager.store, "q", "r")
    assert (state.cron, state.tz) == ("0 9 * * 1", "Europe/Madrid")
    assert job.id == f"r:{state.next_fire_ms}"


async def _ended(manager, queue, name):
    events = await manager.client.xrange(manager.store.keys(queue).events)
    return any(f.get("schedule") == name and f.get("action") == "ended" for _, f in events)


async def test_repeat_limit_fires_that_many_ticks_across_three_instances_then_ends(
    redis_server, prefix
):
    managers = [QueueManager(redis_server.url, prefix=prefix) for _ in range(3)]
    for m in managers:
        m.create_queue("q")
    opts = {"jobId": "thrice", "repeat": {"every": 100, "limit": 3}}
    try:
        await asyncio.gather(*(m.add_job("q", {"n": 1}, opts) for m in managers))
        m = managers[0]
        await wait_for(lambda: _ended(m, "q", "thrice"), timeout_s=10)
        fired = [t for t, kind in await ledger(m, "q", "thrice") if kind == "fired"]
        assert len(fired) == 3 and fired == list(range(fired[0], fired[0] + 300, 100))
        state = await schedulers.get_schedule_state(m.store, "q", "thrice")
        assert (state.limit, state.fired_count, state.next_fire_ms) == (3, 3, None)
        assert await m.client.zscore(m.store.keys("q").schedules, "thrice") == float("inf")
        # Resuming after a pause does not bring an ended schedule back.
        await schedulers.pause_schedule("thrice", queue="q", manager=m)
        await schedulers.resume_schedule("thrice", queue="q", manager=m)
        state = await schedulers.get_schedule_state(m.store, "q", "thrice")
        assert state.next_fire_ms is None
    finally:
        for m in managers:
            await m.close_all()


async def test_a_limit_counts_past_redefinitions_lowering_ends_it_raising_revives_it(manager):
    await schedulers.upsert("r", queue="q", every_ms=100, manager=manager)
    await wait_for(lambda: _fired(manager, "q", "r", 2))
    result = await schedulers.upsert("r", queue="q", every_ms=100, limit=1, manager=manager)
    assert result.next_fire_ms is None  # fired more than that already: ended at once
    fired = await manager.client.hget(manager.store.keys("q").schedule("r"), "fired")
    more = int(fired) + 2
    result = await schedulers.upsert("r", queue="q", every_ms=100, limit=more, manager=manager)
    assert result.next_fire_ms is not None
    await wait_for(lambda: _ended(manager, "q", "r"))
    state = await schedulers.get_schedule_state(manager.store, "q", "r")
    assert state.fired_count == more and state.next_fire_ms is None


# -- PUT /api/schedules/{name} ----------------------------------------------------------------


async def test_rest_put_creates_changes_lists_and_audits_a_schedule(manager):
    manager.create_queue("q")
    body = {"queue": "q", "cron": "30 6 * * 1-5", "timezone": "Europe/Madrid",
            "data": {"report": "daily"}, "job": {"attempts": 3}, "overlap": "skip"}  # fmt: skip
    async with serve(manager) as api:
        status, got, _ = await api.call("PUT", "/api/schedules/report", json=body)
        assert status == 200 and got["action"] == "created", got
        state = got["schedule"]
        assert (state["cron"], state["tz"], state["source"], state["overlap"]) == (
            "30 6 * * 1-5", "Europe/Madrid", "api", "skip"
        )  # fmt: skip
        fires = got["nextFires"]
        assert len(fires) == 3 and fires == sorted(fires) and fires[0] == state["nextFireMs"]
        status, got, _ = await api.call("PUT", "/api/schedules/report", json=body)
        assert (status, got["action"]) == (200, "unchanged")
        status, got, _ = await api.call(
            "PUT", "/api/schedules/report", json={**body, "cron": "0 7 * * *", "limit": 5}
        )
        assert (status, got["action"], got["schedule"]["limit"]) == (200, "updated", 5)
        status, listed, _ = await api.call("GET", "/api/schedules", role="viewer")
        assert status == 200
        [mine] = [s for s in listed["schedules"] if s["name"] == "report"]
        assert (mine["cron"], mine["source"], mine["queue"]) == ("0 7 * * *", "api", "q")
    definition = orjson.loads(await manager.client.hget(manager.store.keys("q").schedule("report"),
                                                        "def"))  # fmt: skip
    assert definition["data"] == {"report": "daily"} and definition["options"] == {"attempts": 3}
    events = [f for _, f in await manager.client.xrange(manager.store.keys("q").events)]
    audit = [(f["action"], f.get("by")) for f in events if f.get("schedule") == "report"]
    assert audit == [("created", "tester"), ("updated", "tester")]


async def test_a_schedule_put_over_rest_fires_on_its_queue(manager):
    manager.create_queue("q")
    async with serve(manager) as api:
        status, got, _ = await api.call(
            "PUT", "/api/schedules/once", json={"queue": "q", "every_ms": 1000, "limit": 1}
        )
        assert status == 200, got
    await wait_for(lambda: _ended(manager, "q", "once"))
    [(tick, kind)] = await ledger(manager, "q", "once")
    assert kind == "fired" and await manager.get_job("q", f"once:{tick}") is not None


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"queue": "q", "cron": "61 * * * *"}, 400, "cron"),
        ({"queue": "q", "cron": "* * *"}, 400, "cron"),
        ({"queue": "q"}, 400, "cron"),
        ({"queue": "q", "cron": "* * * * *", "every_ms": 60000}, 400, "cron"),
        ({"queue": "q", "every_ms": 10}, 400, "every_ms"),
        ({"queue": "q", "every_ms": 1000, "timezone": "Mars/Olympus"}, 400, "timezone"),
        ({"queue": "q", "every_ms": 1000, "start": 10, "end": 5}, 400, "end"),
        ({"queue": "q", "every_ms": 1000, "limit": 0}, 400, "limit"),
        ({"queue": "q", "every_ms": 1000, "job": {"attempts": 0}}, 400, "job.attempts"),
        ({"queue": "q", "every_ms": 1000, "job": {"jobId": "x"}}, 400, "job.jobId"),
        ({"queue": "q", "every_ms": 1000, "job": {"delay": 5}}, 400, "job.delay"),
        ({"queue": "q", "every_ms": 1000, "misfire": "often"}, 400, "misfire"),
        ({"queue": "q", "every_ms": 1000, "colour": "red"}, 400, "colour"),
        ({"queue": "bad name", "every_ms": 1000}, 400, "queue"),
        ({"queue": "elsewhere", "every_ms": 1000}, 404, "queue"),
        ({"queue": "q", "every_ms": 1000, "job_name": "x" * 201}, 400, "job_name"),
    ],
)
async def test_rest_put_refuses_a_bad_body_naming_the_field(manager, body, status, field):
    manager.create_queue("q")
    async with serve(manager) as api:
        got_status, got, _ = await api.call("PUT", "/api/schedules/s", json=body)
        assert (got_status, got.get("field")) == (status, field), got
    assert not await manager.client.exists(manager.store.keys("q").schedule("s"))


async def test_rest_put_of_a_declared_schedule_is_409_and_of_a_viewer_403(manager):
    manager.create_queue("q")
    await upsert_schedule(manager.store, define_schedule("nightly", "q", cron="0 4 * * *"))
    async with serve(manager) as api:
        body = {"queue": "q", "cron": "0 5 * * *"}
        status, got, _ = await api.call("PUT", "/api/schedules/nightly", json=body)
        assert status == 409 and "engine.toml" in got["error"]
        status, _, _ = await api.call("PUT", "/api/schedules/other", json=body, role="viewer")
        assert status == 403
    stored = orjson.loads(await manager.client.hget(manager.store.keys("q").schedule("nightly"),
                                                    "def"))  # fmt: skip
    assert stored["schedule"]["cron"] == "0 4 * * *"
    assert not await manager.client.exists(manager.store.keys("q").schedule("other"))


async def test_an_ended_schedule_answers_no_next_fire_in_its_state_and_events(manager):
    manager.create_queue("q")
    async with serve(manager) as api:
        body = {"queue": "q", "every_ms": 1000, "end": 1000}  # ended in 1970
        status, got, _ = await api.call("PUT", "/api/schedules/gone", json=body)
        assert status == 200 and got["schedule"]["nextFireMs"] is None and got["nextFires"] == []
        status, got, _ = await api.call("GET", "/api/queues/q/events")
        [created] = [e for e in got["events"] if e.get("schedule") == "gone"]
        assert created["action"] == "created" and "next" not in created  # never ""


async def test_a_name_with_a_trailing_newline_is_refused_and_creates_no_key(manager):
    # `^...$` matched before a final newline: "q\n" was a valid queue or schedule name.
    for bad in ("q\n", "serpram-sync\n"):
        with pytest.raises(ValueError):
            validate_queue_name(bad)
    manager.create_queue("q")
    async with serve(manager) as api:
        body = {"queue": "q", "every_ms": 1000}
        status, got, _ = await api.call("PUT", "/api/schedules/s%0A", json=body)
        assert (status, got["field"]) == (400, "name")
    assert await manager.client.zrange(manager.store.keys("q").schedules, 0, -1) == []

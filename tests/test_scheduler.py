"""The leader loop in-process: exactly-once firing, policies, skew, redefinition, state."""

from __future__ import annotations

import pytest

from engine.cron import next_fire, parse_schedule
from engine.errors import ScheduleNotFound
from engine.lock import LeaseConfig
from engine.scheduler import (
    ScheduleDefinition,
    Scheduler,
    define_schedule,
    get_schedule_state,
    plan_fires,
    remove_schedule,
    run_schedule_now,
    server_time_ms,
    set_schedule_paused,
    upsert_schedule,
)
from engine.store import Store
from tests.helpers import wait_for

LEASE = LeaseConfig(ttl_ms=1500, renew_interval_ms=500, margin_ms=300)


@pytest.fixture
def store(client, prefix):
    return Store(client, prefix=prefix)


@pytest.fixture
async def schedulers(store):
    started: list[Scheduler] = []

    def start(**kwargs) -> Scheduler:
        s = Scheduler(store, "q", kwargs.pop("lease", LEASE), **kwargs).start()
        started.append(s)
        return s

    yield start
    for s in started:
        await s.close()


async def ledger(store, name="tick"):
    """[(tick, kind, recorded_ms, job)] in order."""
    entries = await store.client.xrange(store.keys("q").schedule_ledger(name))
    return [(int(f["tick"]), f["kind"], int(i.split("-")[0]), f["job"]) for i, f in entries]


def every(ms: int, **kw) -> ScheduleDefinition:
    return define_schedule("tick", "q", every_ms=ms, **kw)


# -- definitions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"misfire": "later"}, "misfire"),
        ({"overlap": "queue"}, "overlap"),
        ({"misfire_grace_ms": -1}, "misfire_grace_ms"),
        ({"misfire_grace_ms": 99}, "misfire_grace_ms"),
        ({"opts": {"jobId": "x"}}, "job_id"),
        ({"opts": {"delay": 5}}, "delay"),
        ({"opts": {"attempts": 0}}, "attempts"),
        ({"data": {1, 2}}, "data"),
    ],
)
def test_invalid_definitions_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        define_schedule("s", "q", every_ms=1000, **kwargs)


@pytest.mark.parametrize("name", ["", "a:b", "a{b}", "x" * 101, "-a"])
def test_invalid_schedule_names_are_refused(name):
    with pytest.raises(ValueError, match="schedule name"):
        define_schedule(name, "q", every_ms=1000)


def test_definition_round_trips_and_fingerprint_is_stable():
    d = define_schedule("s", "q", cron="0 3 * * *", tz="Europe/Madrid", data={"a": 1},
                        opts={"attempts": 3}, misfire="all", overlap="skip")  # fmt: skip
    again = ScheduleDefinition.from_dict(d.to_dict())
    assert again == d and again.fingerprint() == d.fingerprint()
    other = define_schedule("s", "q", cron="0 4 * * *", tz="Europe/Madrid", data={"a": 1},
                            opts={"attempts": 3}, misfire="all", overlap="skip")  # fmt: skip
    assert other.fingerprint() != d.fingerprint()
    assert parse_schedule(cron="0 3 * * *", tz="Europe/Madrid") == d.schedule


# -- the loop ------------------------------------------------------------------------------


async def test_three_schedulers_fire_every_tick_exactly_once_never_early(store, schedulers):
    await upsert_schedule(store, every(100))
    instances = [schedulers(instance_id=f"i{n}") for n in range(3)]
    await wait_for(lambda: _count_fired(store, 15), timeout_s=10)
    entries = await ledger(store)
    ticks = [t for t, kind, _, _ in entries if kind == "fired"]
    assert len(ticks) == len(set(ticks))
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 100))  # contiguous, none missed
    assert all(recorded >= tick for tick, _, recorded, _ in entries)
    waiting = await store.client.lrange(store.keys("q").wait, 0, -1)
    assert waiting == [f"tick:{t}" for t in ticks[: len(waiting)]]
    assert sum(1 for s in instances if s.fired) == 1  # only the leader fired


async def _count_fired(store, n):
    return sum(1 for e in await ledger(store) if e[1] == "fired") >= n


async def test_released_lease_is_taken_over_and_ticks_continue_exactly_once(store, schedulers):
    await upsert_schedule(store, every(100, misfire="all", misfire_grace_ms=5000))
    a = schedulers(instance_id="a")
    await wait_for(lambda: _count_fired(store, 3))
    b = schedulers(instance_id="b")
    await a.close()
    await wait_for(lambda: _count_fired(store, 10))
    assert b.fired > 0 and b.lease.epoch == a.lease.epoch + 1
    ticks = [t for t, kind, _, _ in await ledger(store) if kind == "fired"]
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 100))


async def test_an_instance_believing_it_is_minutes_ahead_fires_nothing_early(store, schedulers):
    await upsert_schedule(store, every(100, misfire="all", misfire_grace_ms=10_000))
    ahead = schedulers(instance_id="ahead", clock_offset_ms=180_000)
    await wait_for(lambda: _count_fired(store, 8))
    entries = await ledger(store)
    assert all(kind == "fired" for _, kind, _, _ in entries)  # nothing missed either
    ticks = [t for t, _, _, _ in entries]
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 100))
    assert all(recorded >= tick for tick, _, recorded, _ in entries)
    assert ahead.fired == len(ticks)


@pytest.mark.parametrize(
    "misfire, grace_ms",
    [("skip", 100), ("once", 100), ("all", 60_000), ("all", 350)],
)
async def test_misfire_policy_after_all_instances_were_down(store, schedulers, misfire, grace_ms):
    period = 100
    await upsert_schedule(store, every(period, misfire=misfire, misfire_grace_ms=grace_ms))
    first = schedulers(instance_id="a")
    await wait_for(lambda: _count_fired(store, 2))
    await first.close()
    down_from = int(await store.client.hget(store.keys("q").schedule("tick"), "next"))
    # Everyone is down across 8 ticks (measured on the Redis clock).
    await wait_for(lambda: _server_after(store, down_from + 8 * period), timeout_s=5)
    restarted_at = await server_time_ms(store)
    schedulers(instance_id="b")
    await wait_for(lambda: _ledger_reaches(store, restarted_at + 2 * period))
    entries = await ledger(store)
    ticks = [t for t, _, _, _ in entries]
    assert ticks == list(range(ticks[0], ticks[-1] + 1, period))  # each tick exactly once
    # The restarted instance acts a moment after `restarted_at` (more on a loaded machine):
    # its first ledger write decides which ticks were due while everyone was down.
    caught_up_at = min(rec for _, _, rec, _ in entries if rec >= restarted_at)
    down = [(t, kind, rec) for t, kind, rec, _ in entries if down_from <= t <= caught_up_at]
    assert len(down) >= 8
    late_fires = [(t, rec) for t, kind, rec in down if kind == "fired"]
    if misfire == "skip":  # at most the latest, and only if it was still within the grace
        assert [t for t, _ in late_fires] in ([], [down[-1][0]])
        assert all(rec - t <= grace_ms for t, rec in late_fires)
    elif misfire == "once":
        assert [t for t, _ in late_fires] == [down[-1][0]]
    elif grace_ms == 60_000:
        assert len(late_fires) == len(down)
    else:
        assert 0 < len(late_fires) < len(down)
        assert all(rec - t <= grace_ms for t, rec in late_fires)
    missed = [t for t, kind, _ in down if kind == "missed"]
    assert len(missed) == len(down) - len(late_fires)
    all_missed = sum(1 for e in entries if e[1] == "missed")
    state = await get_schedule_state(store, "q", "tick")
    events = await store.client.xrange(store.keys("q").events)
    assert state.missed_count == all_missed >= len(missed)
    assert sum(1 for _, f in events if f["event"] == "missed") == all_missed


@pytest.mark.parametrize(
    "expr, gap_days, lease",
    [
        ("*/10 * * * * *", 6, LeaseConfig(ttl_ms=3000, renew_interval_ms=1000, margin_ms=500)),
        ("* * * * *", 70, LeaseConfig()),
    ],
)
async def test_a_leader_after_a_long_gap_fires_the_latest_tick_and_keeps_its_lease(
    store, schedulers, expr, gap_days, lease
):
    """#12 item 2: on main the catch-up scan blocked the loop past the lease (0 fires, the
    epoch climbing); now the latest tick fires at once, by the same leader."""
    d = define_schedule("tick", "q", cron=expr, misfire="once")
    await upsert_schedule(store, d)
    k = store.keys("q")
    now = await server_time_ms(store)
    stale = next_fire(d.schedule, now - gap_days * 86_400_000)
    await store.client.hset(k.schedule("tick"), "next", stale)
    await store.client.zadd(k.schedules, {"tick": stale})
    leader = schedulers(instance_id="a", lease=lease)
    await wait_for(lambda: _count_fired(store, 1), timeout_s=10)
    entries = await ledger(store)
    fired = [t for t, kind, _, _ in entries if kind == "fired"]
    assert fired[0] >= now - 60_000  # the latest due tick, not the stale one
    assert leader.lease.epoch == 1 and await store.client.hget(k.meta, "leaderEpoch") == "1"
    summary = [f for _, f in await store.client.xrange(k.schedule_ledger("tick")) if "count" in f]
    assert len(summary) == 1 and summary[0]["exact"] == "0"  # at least N, said so
    h = await store.client.hgetall(k.schedule("tick"))
    assert h["missedAtLeast"] == "1" and int(h["missed"]) > 100


async def test_a_resent_fire_call_is_taken_as_applied(store, schedulers, caplog):
    await upsert_schedule(store, every(60_000))
    s = Scheduler(store, "q", LEASE, instance_id="a")
    assert await s.lease.acquire()
    k = store.keys("q")
    due = (await server_time_ms(store)) // 60_000 * 60_000
    await store.client.hset(k.schedule("tick"), "next", due)
    fp = await store.client.hget(k.schedule("tick"), "fp")
    plan = plan_fires(every(60_000), due, due + 5)
    assert (await s._call_fire("tick", fp, due, plan, ""))[::3] == (1, 0)
    # The same call once more, as redis-py sends it again after a lost reply.
    assert (await s._call_fire("tick", fp, due, plan, ""))[::3] == (0, 1)
    assert await store.client.llen(k.wait) == 1
    await s.lease.release()


async def _server_after(store, ms):
    return await server_time_ms(store) >= ms


async def _ledger_reaches(store, ms):
    entries = await ledger(store)
    return bool(entries) and entries[-1][0] >= ms


async def test_overlap_skip_drops_ticks_while_the_previous_run_is_unfinished(store, schedulers):
    await upsert_schedule(store, every(100, overlap="skip"))
    schedulers(instance_id="a")
    k = store.keys("q")
    # No worker: the first run stays waiting, so every later tick is dropped as an overlap.
    await wait_for(lambda: _ledger_len(store, 4))
    entries = await ledger(store)
    assert entries[0][1] == "fired"
    assert {kind for _, kind, _, _ in entries[1:]} == {"missed"}
    first_job = entries[0][3]
    assert await store.client.lrange(k.wait, 0, -1) == [first_job]
    # The run finishes (as a worker would: `fon` stamped): the next tick fires again.
    await store.client.lrem(k.wait, 0, first_job)
    await store.client.zadd(k.completed, {first_job: 1})
    await store.client.hset(k.job(first_job), "fon", 1)
    await wait_for(lambda: _count_fired(store, 2))
    events = [f for _, f in await store.client.xrange(k.events) if f["event"] == "missed"]
    assert events and all(e["reason"] == "overlap" for e in events)


async def _ledger_len(store, n):
    return len(await ledger(store)) >= n


async def test_redefinition_replaces_the_schedule_and_nothing_fires_for_the_old_one(
    store, schedulers
):
    await upsert_schedule(store, every(100))
    s = schedulers(instance_id="a")
    await wait_for(lambda: _count_fired(store, 3))
    result = await upsert_schedule(store, every(700))
    s.wake()
    changed_at = await server_time_ms(store)
    assert result.action == "updated"
    await wait_for(lambda: _ledger_reaches(store, changed_at + 1400), timeout_s=5)
    after = [t for t, kind, _, _ in await ledger(store) if t > changed_at]
    assert after and all(t % 700 == 0 for t in after)


async def test_pause_stops_fires_and_resume_does_not_catch_up(store, schedulers):
    await upsert_schedule(store, every(100))
    schedulers(instance_id="a")
    await wait_for(lambda: _count_fired(store, 2))
    assert await set_schedule_paused(store, "q", "tick", True) is True
    assert await set_schedule_paused(store, "q", "tick", True) is False
    paused_at = await server_time_ms(store)
    state = await get_schedule_state(store, "q", "tick")
    assert state.paused and state.next_fire_ms is None
    await wait_for(lambda: _server_after(store, paused_at + 500))
    resumed_at = await server_time_ms(store)
    await set_schedule_paused(store, "q", "tick", False)
    await wait_for(lambda: _ledger_reaches(store, resumed_at + 100))
    during = [t for t, _, _, _ in await ledger(store) if paused_at + 100 < t < resumed_at]
    assert during == []  # neither fired nor missed


async def test_remove_deletes_the_schedule_and_its_ledger(store, schedulers):
    await upsert_schedule(store, every(100))
    schedulers(instance_id="a")
    await wait_for(lambda: _count_fired(store, 1))
    k = store.keys("q")
    assert await remove_schedule(store, "q", "tick", actor="ops")
    assert await store.client.exists(k.schedule("tick"), k.schedule_ledger("tick")) == 0
    assert await store.client.zscore(k.schedules, "tick") is None
    events = [f for _, f in await store.client.xrange(k.events) if f["event"] == "schedule"]
    assert events[-1] == {"event": "schedule", "schedule": "tick", "action": "removed", "by": "ops"}
    assert not await remove_schedule(store, "q", "tick")


async def test_run_now_adds_an_out_of_band_job_and_keeps_the_schedule(manager, store):
    store = manager.store
    q = manager.create_queue("q")
    opts = {"attempts": 3, "backoff": {"type": "exponential", "delay": 5000}}
    d = define_schedule("tick", "q", cron="0 0 1 1 *", data={"src": "cron"}, opts=opts)
    await upsert_schedule(store, d)
    before = await store.client.hget(q.keys.schedule("tick"), "next")
    job = await run_schedule_now(q, "tick")
    assert job.id.isdigit() and job.name == "tick" and job.data == {"src": "cron"}
    assert job.opts.attempts == 3 and job.opts.backoff is not None
    assert await store.client.hget(q.keys.schedule("tick"), "next") == before
    assert await ledger(store) == []


async def test_state_reports_fires_leader_successes_and_consecutive_failures(store, schedulers):
    await upsert_schedule(store, every(100, overlap="allow"))
    s = schedulers(instance_id="leader-1")
    await wait_for(lambda: _count_fired(store, 5))
    await s.close()
    k = store.keys("q")
    jobs = [job for _, kind, _, job in await ledger(store) if kind == "fired"]
    c = store.client
    # oldest ... newest: completed, completed, failed, failed, (newest still waiting)
    for job, target, score in [(jobs[0], k.completed, 111), (jobs[1], k.completed, 222),
                               (jobs[2], k.failed, 333), (jobs[3], k.failed, 444)]:  # fmt: skip
        await c.lrem(k.wait, 0, job)
        await c.zadd(target, {job: score})
    for job in jobs[5:]:
        await c.lrem(k.wait, 0, job)
        await c.zadd(k.failed, {job: 999})
    state = await get_schedule_state(store, "q", "tick")
    assert state.fired_count == len(jobs)
    assert state.last_job_id == jobs[-1] and state.last_fire_ms == int(jobs[-1].split(":")[1])
    assert state.last_success_ms == 222
    assert state.consecutive_failures == 2 + len(jobs[5:])
    assert state.leader is None and state.leader_epoch == 1  # released on close
    d = state.to_dict()
    assert d["lastSuccess"] == "1970-01-01T00:00:00.222Z" and d["everyMs"] == 100


async def test_state_of_an_unknown_schedule_is_not_found(store):
    from engine.errors import ScheduleNotFound

    with pytest.raises(ScheduleNotFound):
        await get_schedule_state(store, "q", "nope")


async def test_run_now_with_an_idempotency_key_returns_the_first_job_on_a_retry(manager, store):
    d = every(60_000)
    await upsert_schedule(manager.store, d)
    queue = manager.create_queue("q")
    first = await run_schedule_now(queue, "tick", "ops", idempotency_key="req-1")
    again = await run_schedule_now(queue, "tick", "ops", idempotency_key="req-1")
    other = await run_schedule_now(queue, "tick", "ops", idempotency_key="req-2")
    assert again.id == first.id != other.id
    k = manager.store.keys("q")
    assert await manager.client.lrange(k.wait, 0, -1) == [first.id, other.id]
    manual = [f for _, f in await manager.client.xrange(k.events) if f["event"] == "manual"]
    assert [(f["jobId"], f["by"]) for f in manual] == [(first.id, "ops"), (other.id, "ops")]
    # Remembered for a bounded time, under a key of the queue's slot.
    assert 0 < await manager.client.pttl(k.idempotency("tick", "req-1")) <= 24 * 3600 * 1000
    with pytest.raises(ValueError, match="idempotency key"):
        await run_schedule_now(queue, "tick", idempotency_key="has space")
    with pytest.raises(ScheduleNotFound):
        await run_schedule_now(queue, "nope", idempotency_key="req-3")


async def test_a_resent_run_now_call_enqueues_once(manager):
    await upsert_schedule(manager.store, every(60_000))
    k = manager.store.keys("q")
    keys = [k.schedule("tick"), k.idempotency("tick", "r"), k.meta, k.wait, k.prioritized,
            k.events, k.marker, k.job("77")]  # fmt: skip
    args = ["77", 60_000, 1000, "tick", "ops"]
    assert (await manager.store.scripts.run_schedule(keys, args))[:2] == [1, "77"]
    assert (await manager.store.scripts.run_schedule(keys, args))[:2] == [0, "77"]
    assert await manager.client.lrange(k.wait, 0, -1) == ["77"]

"""fire_schedule-11+ called directly: fence, compare-and-set, due check, ledger, overlap,
resend, declared keys."""

from __future__ import annotations

from unittest.mock import ANY

import orjson
import pytest
from redis.exceptions import ResponseError

from engine.lock import LeaderLease, LeaseConfig
from engine.scheduler import define_schedule, server_time_ms, upsert_schedule
from engine.store import Store
from tests.helpers import unwait

HOUR = 3_600_000


@pytest.fixture
def store(client, prefix):
    return Store(client, prefix=prefix)


async def setup(store, *, overlap="allow", **kw):
    """A schedule whose next fire lies one hour in the past, and a held lease."""
    d = define_schedule("tick", "q", every_ms=1000, data={"n": 1}, overlap=overlap, **kw)
    await upsert_schedule(store, d)
    k = store.keys("q")
    past = (await server_time_ms(store)) // 1000 * 1000 - HOUR
    await store.client.hset(k.schedule("tick"), "next", past)
    lease = LeaderLease(store, "q", LeaseConfig(), instance_id="me")
    assert await lease.acquire()
    fp = await store.client.hget(k.schedule("tick"), "fp")
    return k, past, lease, fp


def call(
    store,
    k,
    lease,
    fp,
    expected,
    new_next,
    fire=(),
    missed=(),
    extra=0,
    token=None,
    epoch=None,
    previous="",
    extra_from="",
    exact="1",
    keys=None,
):
    fixed = [
        k.lease,
        k.meta,
        k.schedules,
        k.schedule("tick"),
        k.schedule_ledger("tick"),
        k.wait,
        k.prioritized,
        k.active,
        k.delayed,
        k.events,
        k.marker,
    ]
    tail = [k.job(f"tick:{t}") for t in fire] + ([k.job(previous)] if previous else [])
    return store.scripts.fire_schedule(
        fixed + tail if keys is None else keys,
        [token or lease.token, lease.epoch if epoch is None else epoch, "tick", fp, expected,
         new_next, ",".join(map(str, fire)), ",".join(map(str, missed)), extra, extra_from,
         exact, previous, 1000, 1000],
    )  # fmt: skip


async def last_job(store, k):
    return await store.client.hget(k.schedule("tick"), "lastJob") or ""


async def test_fire_enqueues_the_deterministic_job_records_the_ledger_and_moves_next(store):
    k, past, lease, fp = await setup(store)
    code, missed, now, _ = await call(
        store, k, lease, fp, past, past + 2000, fire=[past, past + 1000]
    )
    assert (code, missed) == (2, 0) and now >= past
    c = store.client
    assert await c.lrange(k.wait, 0, -1) == [f"tick:{past}", f"tick:{past + 1000}"]
    job = await c.hgetall(k.job(f"tick:{past}"))
    assert job["name"] == "tick" and orjson.loads(job["data"]) == {"n": 1}
    assert job["atm"] == "0" and int(job["ts"]) == now
    ledger = await c.xrange(k.schedule_ledger("tick"))
    assert [(f["tick"], f["job"], f["kind"]) for _, f in ledger] == [
        (str(past), f"tick:{past}", "fired"),
        (str(past + 1000), f"tick:{past + 1000}", "fired"),
    ]
    assert await c.zscore(k.schedules, "tick") == past + 2000
    h = await c.hgetall(k.schedule("tick"))
    assert (h["next"], h["last"], h["lastJob"], h["fired"]) == (
        str(past + 2000),
        str(past + 1000),
        f"tick:{past + 1000}",
        "2",
    )
    events = [f["event"] for _, f in await c.xrange(k.events)]
    assert events.count("fired") == 2 and events.count("waiting") == 2
    assert await c.zscore(k.marker, "w") == 0


async def test_a_resent_fire_is_recognised_as_already_applied_and_writes_nothing(store):
    k, past, lease, fp = await setup(store)
    assert await call(store, k, lease, fp, past, past + 1000, fire=[past]) == [1, 0, ANY, 0]
    # The same call again (redis-py resends a call whose reply it lost).
    code, missed, _, resent = await call(store, k, lease, fp, past, past + 1000, fire=[past])
    assert (code, missed, resent) == (0, 0, 1)
    assert await store.client.llen(k.wait) == 1
    assert await store.client.xlen(k.schedule_ledger("tick")) == 1
    # A different plan from the same stale `next` is a real conflict.
    code, _, _, resent = await call(store, k, lease, fp, past, past + 2000, fire=[past])
    assert (code, resent) == (-5, 0)


async def test_every_key_is_declared_and_checked_before_any_write(store):
    k, past, lease, fp = await setup(store)
    c = store.client
    fixed = [k.lease, k.meta, k.schedules, k.schedule("tick"), k.schedule_ledger("tick"), k.wait,
             k.prioritized, k.active, k.delayed, k.events, k.marker]  # fmt: skip
    with pytest.raises(ResponseError, match="expected 13 keys"):
        await call(store, k, lease, fp, past, past + 2000, fire=[past, past + 1000],
                   keys=[*fixed, k.job(f"tick:{past}")])  # fmt: skip
    with pytest.raises(ResponseError, match="not the job of tick"):
        await call(store, k, lease, fp, past, past + 1000, fire=[past],
                   keys=[*fixed, k.job("tick:1")])  # fmt: skip
    await c.hset(k.schedule("tick"), "lastJob", "tick:7")
    with pytest.raises(ResponseError, match="not the job tick:7"):
        await call(store, k, lease, fp, past, past + 1000, fire=[past], previous="tick:7",
                   keys=[*fixed, k.job(f"tick:{past}"), k.job("other")])  # fmt: skip
    assert await c.exists(k.wait, k.schedule_ledger("tick"), k.job(f"tick:{past}")) == 0
    assert await c.hget(k.schedule("tick"), "next") == str(past)


async def test_a_caller_with_a_stale_last_job_is_refused(store):
    k, past, lease, fp = await setup(store)
    assert (await call(store, k, lease, fp, past, past + 1000, fire=[past]))[0] == 1
    code, *_ = await call(store, k, lease, fp, past + 1000, past + 2000, fire=[past + 1000])
    assert code == -5  # lastJob is tick:<past> now, the caller said none


@pytest.mark.parametrize("which", ["token", "epoch"])
async def test_stale_token_or_epoch_is_refused_and_writes_nothing(store, which):
    k, past, lease, fp = await setup(store)
    stale = {"token": {"token": "someone/else"}, "epoch": {"epoch": lease.epoch - 1}}[which]
    code, _, _, _ = await call(store, k, lease, fp, past, past + 1000, fire=[past], **stale)
    assert code == -4
    assert await store.client.exists(k.wait, k.schedule_ledger("tick"), k.job(f"tick:{past}")) == 0
    assert await store.client.hget(k.schedule("tick"), "next") == str(past)


async def test_expired_lease_refuses_even_the_right_token(store):
    k, past, lease, fp = await setup(store)
    await store.client.delete(k.lease)
    assert (await call(store, k, lease, fp, past, past + 1000, fire=[past]))[0] == -4


async def test_changed_definition_or_pause_refuses_a_fire_computed_from_the_old_one(store):
    k, past, lease, fp = await setup(store)
    assert (await call(store, k, lease, "0" * 32, past, past + 1000, fire=[past]))[0] == -5
    await store.client.hset(k.schedule("tick"), "paused", "1")
    assert (await call(store, k, lease, fp, past, past + 1000, fire=[past]))[0] == -5
    assert await store.client.exists(k.wait, k.prioritized) == 0


async def test_a_tick_after_server_time_is_refused_as_not_due(store):
    k, past, lease, fp = await setup(store)
    future = past + 2 * HOUR
    code, _, now, _ = await call(store, k, lease, fp, past, future + 1000, fire=[past, future])
    assert code == -6 and now < future
    code, _, _, _ = await call(store, k, lease, fp, past, future + 1000, missed=[future])
    assert code == -6
    await store.client.hset(k.schedule("tick"), "next", future)
    code, _, _, _ = await call(store, k, lease, fp, future, future + 1000)
    assert code == -6
    assert await store.client.exists(k.wait, k.schedule_ledger("tick")) == 0


@pytest.mark.parametrize("exact", ["1", "0"])
async def test_missed_ticks_are_counted_in_ledger_events_and_the_schedule(store, exact):
    k, past, lease, fp = await setup(store)
    code, missed, _, _ = await call(
        store, k, lease, fp, past, past + 10_000, fire=[past + 9000], missed=[past, past + 1000],
        extra=7, extra_from=past + 2000, exact=exact,
    )  # fmt: skip
    assert (code, missed) == (1, 9)
    c = store.client
    ledger = [f for _, f in await c.xrange(k.schedule_ledger("tick"))]
    assert [(f["tick"], f["kind"], f.get("count"), f.get("exact")) for f in ledger] == [
        (str(past), "missed", None, None),
        (str(past + 1000), "missed", None, None),
        (str(past + 2000), "missed", "7", exact),  # one summary entry for the unlisted ticks
        (str(past + 9000), "fired", None, None),
    ]
    events = [f for _, f in await c.xrange(k.events) if f["event"] == "missed"]
    assert [(e["tick"], e.get("count"), e.get("exact")) for e in events] == [
        (str(past), None, None),
        (str(past + 1000), None, None),
        (str(past + 2000), "7", exact),
    ]
    h = await c.hgetall(k.schedule("tick"))
    assert h["missed"] == "9"
    assert ("missedAtLeast" in h) == (exact == "0")


@pytest.mark.parametrize("state", ["wait", "prioritized", "active", "delayed"])
async def test_overlap_skip_drops_the_tick_while_the_previous_run_is_unfinished(store, state):
    k, past, lease, fp = await setup(store, overlap="skip")
    assert (await call(store, k, lease, fp, past, past + 1000, fire=[past]))[0] == 1
    c = store.client
    first = f"tick:{past}"
    if state != "wait":
        await unwait(c, k, first)
        await c.zadd(getattr(k, state), {first: 1})
    code, missed, _, _ = await call(store, k, lease, fp, past + 1000, past + 2000,
                                    fire=[past + 1000], previous=first)  # fmt: skip
    assert (code, missed) == (0, 1)
    assert not await c.exists(k.job(f"tick:{past + 1000}"))
    # Finished (every finish stamps `fon`): the next tick runs.
    await unwait(c, k, first)
    await c.zrem(getattr(k, state), first)
    await c.zadd(k.completed, {first: 1})
    await c.hset(k.job(first), "fon", 1)
    code, missed, _, _ = await call(store, k, lease, fp, past + 2000, past + 3000,
                                    fire=[past + 2000], previous=first)  # fmt: skip
    assert (code, missed) == (1, 0)
    reasons = [f["reason"] for _, f in await c.xrange(k.schedule_ledger("tick"))]
    assert reasons == ["", "overlap", ""]


async def test_overlap_skip_within_one_catch_up_call_fires_only_the_first(store):
    k, past, lease, fp = await setup(store, overlap="skip")
    code, missed, _, _ = await call(
        store, k, lease, fp, past, past + 3000, fire=[past, past + 1000]
    )
    assert (code, missed) == (1, 1)


async def test_an_ended_schedule_is_parked_at_infinity(store):
    k, past, lease, fp = await setup(store)
    assert (await call(store, k, lease, fp, past, "", fire=[past]))[0] == 1
    assert await store.client.zscore(k.schedules, "tick") == float("inf")
    assert await store.client.hget(k.schedule("tick"), "next") == ""


async def test_job_with_priority_and_options_is_stored_as_add_job_would(store):
    k, past, lease, fp = await setup(
        store, opts={"attempts": 3, "backoff": {"type": "exponential", "delay": 5000},
                     "priority": 2, "removeOnComplete": 50, "removeOnFail": 100},
    )  # fmt: skip
    await call(store, k, lease, fp, past, past + 1000, fire=[past])
    job = await store.client.hgetall(k.job(f"tick:{past}"))
    assert job["pri"] == "2"
    assert orjson.loads(job["opts"]) == {
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 5000},
        "priority": 2,
        "removeOnComplete": 50,
        "removeOnFail": 100,
    }
    assert await store.client.zscore(k.prioritized, f"tick:{past}") >= 2 * 2**32
    assert await store.client.exists(k.wait) == 0


# -- the fire-count limit (Bull's repeat.limit) ---------------------------------------------


async def test_a_limit_caps_a_catch_up_and_ends_the_schedule_in_the_same_call(store):
    k, past, lease, fp = await setup(store, limit=3)
    ticks = [past + i * 1000 for i in range(5)]
    # The caller planned five ticks and a next fire: the script fires three and ends it.
    code, missed, _, flags = await call(store, k, lease, fp, past, past + 5000, fire=ticks)
    assert (code, missed, flags) == (3, 0, 2)
    c = store.client
    assert await c.lrange(k.wait, 0, -1) == [f"tick:{t}" for t in ticks[:3]]
    assert not await c.exists(k.job(f"tick:{ticks[3]}"))
    h = await c.hgetall(k.schedule("tick"))
    assert (h["next"], h["fired"], h["limitEnded"]) == ("", "3", str(past))
    assert await c.zscore(k.schedules, "tick") == float("inf")
    ended = [f for _, f in await c.xrange(k.events) if f.get("action") == "ended"]
    assert ended == [{"event": "schedule", "schedule": "tick", "action": "ended",
                      "reason": "limit", "limit": "3"}]  # fmt: skip
    # A resend of that call (its reply lost) is recognised as applied and writes nothing.
    before = await c.xlen(k.events)
    again = await call(store, k, lease, fp, past, past + 5000, fire=ticks)
    assert (again[0], again[3]) == (0, 1)
    assert await c.llen(k.wait) == 3 and await c.xlen(k.events) == before


async def test_a_limit_counts_fires_across_calls_and_a_stale_plan_cannot_exceed_it(store):
    k, past, lease, fp = await setup(store, limit=2)
    assert (await call(store, k, lease, fp, past, past + 1000, fire=[past]))[3] == 0
    # The next call plans two more ticks: only one fits.
    code, _, _, flags = await call(store, k, lease, fp, past + 1000, past + 3000,
                                   fire=[past + 1000, past + 2000],
                                   previous=await last_job(store, k))  # fmt: skip
    assert (code, flags) == (1, 2)
    assert await store.client.llen(k.wait) == 2
    # Fired its limit already (say a resume gave it a next time): nothing fires, it ends.
    await store.client.hset(k.schedule("tick"), "next", past + 3000)
    previous = await last_job(store, k)
    code, _, _, flags = await call(
        store, k, lease, fp, past + 3000, past + 4000, fire=[past + 3000], previous=previous
    )
    assert (code, flags) == (0, 2)
    assert await store.client.llen(k.wait) == 2
    assert await store.client.hget(k.schedule("tick"), "next") == ""

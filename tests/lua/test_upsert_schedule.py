"""upsert_schedule-4 called directly and through upsert_schedule()."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from engine.scheduler import define_schedule, upsert_schedule
from engine.store import Store


@pytest.fixture
def store(client, prefix):
    return Store(client, prefix=prefix)


def keys3(store, name="s"):
    k = store.keys("q")
    return [k.schedules, k.schedule(name), k.events, k.schedules_aside]


async def test_same_fingerprint_is_a_no_op_and_a_new_one_replaces(store, client):
    s = store.scripts
    args = ["s", "fp1", "{}", "job", "null", "{}", 0, "allow", 5000, 100, "register"]
    code, nxt, at = await s.upsert_schedule(keys3(store), args)
    assert (code, nxt) == (1, "5000") and at > 0
    # The same definition again (another instance, or a resend): unchanged, when it was stored.
    assert await s.upsert_schedule(keys3(store), [*args[:8], 9999, 100, "register"]) == [
        0,
        "5000",
        at,
    ]
    assert await client.zscore(store.keys("q").schedules, "s") == 5000
    replaced = ["s", "fp2", '{"x":1}', "job2", "1", "{}", 0, "skip", 7000, 100, "register"]
    assert (await s.upsert_schedule(keys3(store), replaced))[:2] == [2, "7000"]
    h = await client.hgetall(store.keys("q").schedule("s"))
    assert (h["fp"], h["next"], h["jobName"], h["overlap"]) == ("fp2", "7000", "job2", "skip")
    actions = [f["action"] for _, f in await client.xrange(store.keys("q").events)]
    assert actions == ["created", "updated"]


async def test_upsert_keeps_a_paused_schedule_parked_and_history_fields(store, client):
    s = store.scripts
    k = store.keys("q")
    await s.upsert_schedule(
        keys3(store), ["s", "fp1", "{}", "j", "null", "{}", 0, "allow", 5, 100, "register"]
    )
    await client.hset(k.schedule("s"), mapping={"paused": "1", "fired": "4", "missed": "2"})
    await s.upsert_schedule(
        keys3(store), ["s", "fp2", "{}", "j", "null", "{}", 0, "allow", 6, 100, "register"]
    )
    assert await client.zscore(k.schedules, "s") == float("inf")
    h = await client.hgetall(k.schedule("s"))
    assert (h["paused"], h["fired"], h["missed"], h["next"]) == ("1", "4", "2", "6")


async def test_many_instances_registering_together_leave_one_schedule(store, client):
    d = define_schedule("serpram", "q", cron="*/5 * * * *", opts={"attempts": 3})
    results = await asyncio.gather(*(upsert_schedule(store, d) for _ in range(20)))
    assert sorted(r.action for r in results) == ["created"] + ["unchanged"] * 19
    assert len({r.next_fire_ms for r in results}) == 1
    k = store.keys("q")
    assert await client.zrange(k.schedules, 0, -1) == ["serpram"]
    events = [f for _, f in await client.xrange(k.events) if f["event"] == "schedule"]
    assert len(events) == 1
    stored = orjson.loads(await client.hget(k.schedule("serpram"), "def"))
    assert stored["schedule"]["cron"] == "*/5 * * * *"


async def test_changed_expression_recomputes_next_fire(store, client):
    first = await upsert_schedule(store, define_schedule("s", "q", cron="0 0 1 1 *"))
    second = await upsert_schedule(store, define_schedule("s", "q", cron="* * * * *"))
    assert second.action == "updated"
    assert second.next_fire_ms is not None and first.next_fire_ms is not None
    assert second.next_fire_ms < first.next_fire_ms
    assert second.next_fire_ms % 60_000 == 0
    assert await client.zscore(store.keys("q").schedules, "s") == second.next_fire_ms


async def test_a_restore_says_missing_then_restored_and_takes_a_schedule_back_from_aside(
    store, client
):
    s = store.scripts
    k = store.keys("q")
    await client.sadd(k.schedules_aside, "s")
    args = ["s", "fp1", "{}", "j", "null", "{}", 0, "allow", 5, 100, "restore"]
    assert (await s.upsert_schedule(keys3(store), args))[0] == 1
    events = [(f["action"], f.get("next")) for _, f in await client.xrange(k.events)]
    assert events == [("missing", None), ("restored", "5")]
    assert not await client.sismember(k.schedules_aside, "s")

"""The seed's scheduler functions and the demo processors, end to end with the worker."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from engine import schedulers
from engine.config import parse_config
from engine.lock import LeaseConfig
from engine.scheduler import get_schedule_state
from tests.helpers import wait_for

FAST_LEASE = {"ttl_ms": 1500, "renew_interval_ms": 500, "margin_ms": 300}


@pytest.fixture(autouse=True)
def no_default_manager():
    yield
    schedulers.set_default_manager(None)


def fast(name: str, processor: str, **extra) -> dict:
    return parse_config(
        {
            "lease": FAST_LEASE,
            "schedules": {
                name: {"queue": f"{name}-q", "every_ms": 200, "processor": processor, **extra}
            },
        }
    )


async def test_init_serpram_registers_the_seed_schedule_and_run_now_is_processed(manager, caplog):
    caplog.set_level(logging.INFO, logger="engine.processors")
    result = await schedulers.init_serpram_scheduler(manager)
    assert result.action == "created" and result.next_fire_ms % 300_000 == 0
    again = await schedulers.init_serpram_scheduler(manager)
    assert again.action == "unchanged"
    state = await get_schedule_state(manager.store, "serpram-sync", "serpram")
    assert (state.cron, state.tz, state.paused) == ("*/5 * * * *", "UTC", False)
    job = await schedulers.run_serpram_sync_now(manager)
    assert job.opts.attempts == 3 and job.opts.backoff.delay == 5000
    assert job.opts.remove_on_complete.count == 50 and job.opts.remove_on_fail.count == 100

    async def completed():
        return (await schedulers.get_serpram_stats(manager)).completed == 1

    await wait_for(completed)
    assert any("SERPRAM - reading since: " in r.getMessage() for r in caplog.records)
    after = await get_schedule_state(manager.store, "serpram-sync", "serpram")
    assert after.next_fire_ms == state.next_fire_ms  # run now does not move the schedule
    assert len(manager.schedulers) == 1


async def test_pause_and_resume_the_ayt_scheduler(manager):
    await schedulers.init_ayt_scheduler(manager)
    await schedulers.pause_ayt_scheduler(manager)
    state = await get_schedule_state(manager.store, "ayt-sync", "ayt")
    assert state.paused and await manager.get_queue("ayt-sync").is_paused()
    await schedulers.run_ayt_sync_now(manager)
    assert (await schedulers.get_ayt_stats(manager)).paused == 1
    await schedulers.resume_ayt_scheduler(manager)
    state = await get_schedule_state(manager.store, "ayt-sync", "ayt")
    assert not state.paused and state.next_fire_ms % 60_000 == 0
    assert not await manager.get_queue("ayt-sync").is_paused()


async def test_init_all_without_manager_is_a_clear_error():
    with pytest.raises(RuntimeError, match="init_all_schedulers"):
        await schedulers.get_serpram_stats()


async def test_declared_schedule_runs_its_idempotent_processor_and_reports_success(manager):
    cfg = fast("demo", "engine.processors:serpram_sync")
    results = await schedulers.init_all_schedulers(manager, cfg)
    assert set(results) == {"serpram", "ayt", "demo"}
    assert manager.schedulers["demo-q"].lease.config == LeaseConfig(**FAST_LEASE)

    async def succeeded():
        s = await schedulers.get_state("demo")
        return s if s.last_success_ms and s.fired_count >= 3 else None

    state = await wait_for(succeeded)
    assert state.consecutive_failures == 0 and state.leader is not None
    watermark = manager.store.keys("demo-q").watermark("demo")

    async def caught_up():
        s = await schedulers.get_state("demo")
        mark = await manager.client.get(watermark)
        return mark is not None and int(mark) >= (s.last_fire_ms or 0) - 200

    await wait_for(caught_up)
    # Re-running an old tick (at-least-once) does not move the watermark back.
    queue = manager.get_queue("demo-q")
    before = int(await manager.client.get(watermark))
    from engine.processors import ProcessorContext, serpram_sync

    old = await queue.add({}, name="demo")
    old.id = "demo:1000"
    result = await serpram_sync(old, ProcessorContext(manager, "demo-q", "demo"))
    assert result["advanced"] is False and int(await manager.client.get(watermark)) >= before


async def boom(job):
    raise RuntimeError("sync source down")


async def slow(job):
    await asyncio.sleep(0.7)


async def test_failures_are_counted_consecutively(manager):
    cfg = fast("bad", "tests.test_scheduler_seed:boom", job={"attempts": 1})
    await schedulers.init_all_schedulers(manager, cfg)

    async def failing():
        s = await schedulers.get_state("bad")
        return s if s.consecutive_failures >= 3 else None

    state = await wait_for(failing)
    assert state.last_success_ms is None


async def test_overlap_skip_with_a_slow_job_drops_ticks_while_it_runs(manager):
    cfg = fast("slow", "tests.test_scheduler_seed:slow", overlap="skip")
    await schedulers.init_all_schedulers(manager, cfg)

    async def two_done():
        return (await schedulers.get_stats("slow")).completed >= 2

    await wait_for(two_done)
    c = manager.client
    k = manager.store.keys("slow-q")
    entries = [f for _, f in await c.xrange(k.schedule_ledger("slow"))]
    fired = [f for f in entries if f["kind"] == "fired"]
    missed = [f for f in entries if f["kind"] == "missed"]
    assert missed and all(f["reason"] == "overlap" for f in missed)
    ticks = [int(f["tick"]) for f in entries]
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 200))  # each tick once: fired or missed
    # Never two runs at once: each run started after the previous one finished.
    runs = [await c.hmget(k.job(f["job"]), "pon", "fon") for f in fired]
    finished = [(int(p), int(f)) for p, f in runs if p and f]
    assert len(finished) >= 2
    assert all(nxt[0] >= prev[1] for prev, nxt in itertools.pairwise(finished))


async def test_run_now_of_a_declared_schedule_missing_from_redis_registers_it_first(
    manager, client
):
    """Before setup registered it (a request during startup), or after Redis lost its
    data, "run now" of a declared schedule still runs: it registers the declared
    definition (idempotent) and runs it, instead of answering not found."""
    job = await schedulers.run_serpram_sync_now(manager)  # never initialised here
    assert job.name == "serpram"
    state = await get_schedule_state(manager.store, "serpram-sync", "serpram")
    assert state.cron == "*/5 * * * *"
    for key in await client.keys(f"{manager.prefix}:*"):
        await client.delete(key)  # the data is gone, the process is not
    again = await schedulers.run_serpram_sync_now(manager)
    assert again.name == "serpram"

"""The leader lease: timing validation, acquire/renew/release, fencing epoch, local deadline."""

from __future__ import annotations

import pytest

from engine.lock import LeaderLease, LeaseConfig, current_leader
from engine.store import Store


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(client, prefix):
    return Store(client, prefix=prefix)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"ttl_ms": 0}, "ttl_ms"),
        ({"ttl_ms": -5, "renew_interval_ms": 1, "margin_ms": 0}, "ttl_ms"),
        ({"ttl_ms": 3000, "renew_interval_ms": 3000}, "renew_interval_ms"),
        ({"ttl_ms": 3000, "renew_interval_ms": 1001}, "renew_interval_ms"),
        ({"ttl_ms": 3000, "renew_interval_ms": 0}, "renew_interval_ms"),
        ({"ttl_ms": 3000, "renew_interval_ms": 1000, "margin_ms": 3000}, "margin_ms"),
        ({"ttl_ms": 3000, "renew_interval_ms": 1000, "margin_ms": -1}, "margin_ms"),
        ({"ttl_ms": 3000.5}, "ttl_ms"),
        ({"ttl_ms": True}, "ttl_ms"),
    ],
)
def test_unsafe_lease_timing_is_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        LeaseConfig(**kwargs)


def test_renewal_at_exactly_a_third_of_the_ttl_is_accepted():
    assert LeaseConfig(ttl_ms=3000, renew_interval_ms=1000, margin_ms=2999).ttl_ms == 3000


async def test_only_one_of_several_contenders_acquires_and_epochs_increase(store, client):
    cfg = LeaseConfig(ttl_ms=3000, renew_interval_ms=1000, margin_ms=500)
    a, b, c = (LeaderLease(store, "q", cfg, instance_id=n) for n in "abc")
    results = [await lease.acquire() for lease in (a, b, c)]
    assert results == [True, False, False]
    assert a.is_leader and not b.is_leader and a.epoch == 1
    assert 0 < b.holder_ttl_ms <= 3000
    assert await current_leader(store, "q") == ("a", 1)

    assert await a.release() is True
    assert not a.is_leader
    assert await b.acquire() is True and b.epoch == 2
    assert await c.acquire() is False
    events = await client.xrange(store.keys("q").events)
    assert [(e["event"], e["epoch"]) for _, e in events] == [("leader", "1"), ("leader", "2")]


async def test_renew_is_token_checked_and_a_lost_lease_is_not_renewed(store, client):
    cfg = LeaseConfig(ttl_ms=3000, renew_interval_ms=1000, margin_ms=500)
    a = LeaderLease(store, "q", cfg, instance_id="a")
    b = LeaderLease(store, "q", cfg, instance_id="b")
    assert await a.acquire()
    assert await a.renew() is True
    assert 2000 < await client.pttl(store.keys("q").lease) <= 3000
    # The lease expires (a was frozen) and b takes it: a's renewal must not extend b's.
    await client.delete(store.keys("q").lease)
    assert await b.acquire() and b.epoch == 2
    await client.pexpire(store.keys("q").lease, 2000)
    assert await a.renew() is False
    assert not a.is_leader
    assert await client.get(store.keys("q").lease) == b.token
    assert await client.pttl(store.keys("q").lease) <= 2000
    assert await a.release() is False  # not leader: nothing to release
    assert await client.get(store.keys("q").lease) == b.token


async def test_reacquire_by_the_holder_keeps_its_epoch(store):
    a = LeaderLease(store, "q", LeaseConfig(), instance_id="a")
    assert await a.acquire() and a.epoch == 1
    a.lost()
    assert await a.acquire() and a.epoch == 1


async def test_leader_stops_acting_at_its_local_deadline_without_any_reply(store):
    clock = FakeMonotonic()
    cfg = LeaseConfig(ttl_ms=3000, renew_interval_ms=1000, margin_ms=500)
    a = LeaderLease(store, "q", cfg, instance_id="a", monotonic=clock)
    assert await a.acquire()
    clock.now += 2.49
    assert a.is_leader
    clock.now += 0.02  # acquired + TTL - margin has passed: stop, whatever Redis says
    assert not a.is_leader
    assert a.remaining_s() == 0.0


async def test_deadline_counts_from_before_the_command_was_sent(store, monkeypatch):
    clock = FakeMonotonic()
    cfg = LeaseConfig(ttl_ms=3000, renew_interval_ms=1000, margin_ms=500)
    a = LeaderLease(store, "q", cfg, instance_id="a", monotonic=clock)
    real = store.scripts.acquire_lease

    async def slow_reply(*args, **kwargs):
        result = await real(*args, **kwargs)
        clock.now += 2.0  # the reply took 2 s to come back
        return result

    monkeypatch.setattr(store.scripts, "acquire_lease", slow_reply)
    assert await a.acquire()
    assert a.remaining_s() == pytest.approx(0.5)


@pytest.mark.parametrize("error", [ConnectionError("reset"), TimeoutError(), RuntimeError("x")])
async def test_an_error_while_acquiring_means_not_leader(store, monkeypatch, error):
    a = LeaderLease(store, "q", LeaseConfig(), instance_id="a")

    async def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(store.scripts, "acquire_lease", broken)
    assert await a.acquire() is False
    assert not a.is_leader


async def test_an_error_while_renewing_means_not_leader_until_reconfirmed(store, monkeypatch):
    a = LeaderLease(store, "q", LeaseConfig(), instance_id="a")
    assert await a.acquire()
    real = store.scripts.renew_lease

    async def broken(*args, **kwargs):
        raise ConnectionError("reset")

    monkeypatch.setattr(store.scripts, "renew_lease", broken)
    assert await a.renew() is False
    assert not a.is_leader
    monkeypatch.setattr(store.scripts, "renew_lease", real)
    assert await a.acquire() and a.epoch == 1


async def test_acquire_against_an_unreachable_redis_is_not_leader(redis_factory, prefix):
    from engine.connection import RedisSettings, create_client

    server = redis_factory()
    client = create_client(RedisSettings(url=server.url, connect_timeout_s=0.5))
    server.stop()
    try:
        a = LeaderLease(Store(client, prefix=prefix), "q", LeaseConfig(), instance_id="a")
        assert await a.acquire() is False
        assert not a.is_leader
    finally:
        await client.aclose()

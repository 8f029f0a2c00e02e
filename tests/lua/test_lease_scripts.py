"""acquire_lease-3, renew_lease-1, release_lease-1 called directly."""

from __future__ import annotations

import pytest

from engine.scripts import Scripts


@pytest.fixture
def k(prefix):
    base = f"{prefix}:{{q}}:"
    return {"lease": base + "lease", "meta": base + "meta", "events": base + "events"}


async def test_acquire_sets_the_token_with_a_relative_ttl_and_takes_the_next_epoch(client, k):
    s = Scripts(client)
    ok, epoch, now, ttl = await s.acquire_lease(
        [k["lease"], k["meta"], k["events"]], ["A", 900, 100]
    )
    assert (ok, epoch, ttl) == (1, 1, 900)
    assert await client.get(k["lease"]) == "A"
    assert 0 < await client.pttl(k["lease"]) <= 900
    assert await client.hget(k["meta"], "leaderSince") == str(now)
    # Someone else: refused, told the epoch and how long the lease has left.
    ok, epoch, _, remaining = await s.acquire_lease(
        [k["lease"], k["meta"], k["events"]], ["B", 900, 100]
    )
    assert (ok, epoch) == (0, 1) and 0 < remaining <= 900
    # The holder again: re-confirmed, same epoch, TTL reset.
    ok, epoch, _, _ = await s.acquire_lease([k["lease"], k["meta"], k["events"]], ["A", 5000, 100])
    assert (ok, epoch) == (1, 1) and await client.pttl(k["lease"]) > 900
    await client.delete(k["lease"])
    ok, epoch, _, _ = await s.acquire_lease([k["lease"], k["meta"], k["events"]], ["B", 900, 100])
    assert (ok, epoch) == (1, 2)


async def test_renew_extends_only_the_holders_lease(client, k):
    s = Scripts(client)
    await client.set(k["lease"], "A", px=500)
    ok, now = await s.renew_lease([k["lease"]], ["B", 60_000])
    assert ok == 0 and now > 0
    assert await client.pttl(k["lease"]) <= 500
    ok, _ = await s.renew_lease([k["lease"]], ["A", 60_000])
    assert ok == 1 and await client.pttl(k["lease"]) > 500
    await client.delete(k["lease"])
    ok, _ = await s.renew_lease([k["lease"]], ["A", 60_000])
    assert ok == 0 and await client.exists(k["lease"]) == 0  # never resurrects an expired lease


async def test_release_deletes_only_the_holders_lease(client, k):
    s = Scripts(client)
    await client.set(k["lease"], "A", px=5000)
    assert await s.release_lease([k["lease"]], ["B"]) == 0
    assert await client.get(k["lease"]) == "A"
    assert await s.release_lease([k["lease"]], ["A"]) == 1
    assert await client.exists(k["lease"]) == 0

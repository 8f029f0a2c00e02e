"""The engine's client through a fault-injecting TCP proxy: resets heal, a black hole
costs one socket timeout (never a hang), delay only slows things down."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError, OutOfMemoryError, TimeoutError

from engine import QueueManager
from engine.connection import RedisSettings
from engine.lock import LeaseConfig
from engine.scheduler import define_schedule, upsert_schedule
from tests.helpers import wait_for
from tests.redis_servers import RedisServer
from tests.tcp_proxy import TcpProxy, ThreadedProxy


@pytest.fixture
async def proxy(redis_server):
    p = await TcpProxy("127.0.0.1", redis_server.port).start()
    yield p
    await p.close()


@pytest.fixture
async def proxied(proxy, prefix):
    settings = RedisSettings(
        url=f"redis://127.0.0.1:{proxy.port}/0", socket_timeout_s=0.5, retries=1
    )
    m = QueueManager(prefix=prefix, settings=settings)
    yield m
    await m.close_all()


async def test_reset_connections_are_replaced_on_the_next_call(proxy, proxied):
    queue = proxied.create_queue("p")
    await queue.add(1)
    proxy.set_mode("reset")
    with pytest.raises(ConnectionError):
        await queue.add(2)
    proxy.set_mode("pass")
    await queue.add(3)  # a fresh connection, no manual reconnect
    assert [j.data for j in await queue.get_jobs("waiting", 0, 9)] == [1, 3]


async def test_blackhole_fails_within_the_socket_timeout_instead_of_hanging(proxy, proxied):
    queue = proxied.create_queue("p")
    await queue.add(1)
    proxy.set_mode("blackhole")
    started = time.monotonic()
    with pytest.raises((TimeoutError, ConnectionError)):
        await asyncio.wait_for(queue.add(2), 10)
    # One timeout per attempt (1 retry): bounded, far below the 10 s guard.
    assert time.monotonic() - started < 5
    proxy.set_mode("reset")  # drop the half-open sockets
    proxy.set_mode("pass")
    assert (await queue.get_stats()).waiting in (1, 2)  # the lost reply's add: unknown


async def test_delay_mode_only_slows_calls_down(proxy, proxied):
    queue = proxied.create_queue("p")
    proxy.set_mode("delay", 0.05)
    started = time.monotonic()
    await queue.add(1)
    assert time.monotonic() - started >= 0.05
    assert (await queue.get_stats()).waiting == 1


def test_threaded_proxy_forwards_for_synchronous_clients(redis_server):
    proxy = ThreadedProxy("127.0.0.1", redis_server.port)
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(16) == b"+PONG\r\n"
            proxy.set_mode("reset")
            with pytest.raises(ConnectionResetError):
                sock.sendall(b"PING\r\n")
                if not sock.recv(16):
                    raise ConnectionResetError
    finally:
        proxy.close()


# -- RELIABILITY.md C2, C5, C7, L10 ----------------------------------------------------------

LEASE = LeaseConfig(ttl_ms=3000, renew_interval_ms=1000, margin_ms=500)
ROOT = Path(__file__).resolve().parents[1]


async def _fired_ticks(manager, queue, name="t"):
    entries = await manager.client.xrange(manager.store.keys(queue).schedule_ledger(name))
    return [int(f["tick"]) for _, f in entries if f["kind"] == "fired"]


async def _next_fire_ms(manager, queue, name="t"):
    return int(await manager.client.zscore(manager.store.keys(queue).schedules, name))


async def _sleep_until_ms(target_ms):
    await asyncio.sleep(max(0.0, target_ms / 1000 - time.time()))


async def test_fire_call_timed_out_by_a_busy_redis_fires_each_tick_once(redis_factory, prefix):
    """C5: the fire script is sent while Redis is busy (DEBUG SLEEP), the client times out
    and retries; both calls run later. The tick fires once, the retry is refused."""
    server = redis_factory(extra_args=("--enable-debug-command", "local"))
    settings = RedisSettings(url=server.url, socket_timeout_s=0.2, retries=1)
    manager = QueueManager(prefix=prefix, settings=settings)
    admin = server.client()
    try:
        await upsert_schedule(
            manager.store, define_schedule("t", "c5", every_ms=500, misfire="all")
        )
        manager.start_scheduler("c5", LEASE)
        await wait_for(lambda: _fired_ticks(manager, "c5"), timeout_s=5)
        for _ in range(3):
            due = await _next_fire_ms(manager, "c5")
            await _sleep_until_ms(due - 20)
            await asyncio.to_thread(admin.execute_command, "DEBUG", "SLEEP", "0.5")
        await asyncio.sleep(1.5)
        ticks = await _fired_ticks(manager, "c5")
        assert len(ticks) == len(set(ticks)) >= 5
        assert ticks == list(range(ticks[0], ticks[-1] + 1, 500))  # none missing either
        jobs = await manager.create_queue("c5").get_jobs("waiting", 0, 99)
        assert sorted(int(j.id.split(":")[1]) for j in jobs) == ticks
    finally:
        admin.close()
        await manager.close_all()


async def test_connections_killed_just_before_and_after_a_tick_fire_it_once(redis_factory, prefix):
    """L10: CLIENT KILL of every engine connection at T-5 ms and T+5 ms, three ticks."""
    server = redis_factory()
    settings = RedisSettings(url=server.url, socket_timeout_s=0.5, retries=1)
    manager = QueueManager(prefix=prefix, settings=settings)
    admin = server.client()
    try:
        await upsert_schedule(
            manager.store, define_schedule("t", "l10", every_ms=400, misfire="all")
        )
        manager.start_scheduler("l10", LEASE)
        await wait_for(lambda: _fired_ticks(manager, "l10"), timeout_s=5)
        for _ in range(3):
            due = await _next_fire_ms(manager, "l10")
            for offset in (-5, 5):
                await _sleep_until_ms(due + offset)
                await asyncio.to_thread(admin.client_kill_filter, _type="normal")
        await asyncio.sleep(1.0)
        ticks = await _fired_ticks(manager, "l10")
        assert len(ticks) == len(set(ticks)) and len(ticks) >= 5
        assert ticks == list(range(ticks[0], ticks[-1] + 1, 400))
        assert await _next_fire_ms(manager, "l10") > ticks[-1]
        queue = manager.create_queue("l10")
        assert (await queue.get_stats()).waiting == len(ticks)
    finally:
        admin.close()
        await manager.close_all()


async def test_add_on_a_full_redis_fails_clearly_and_writes_nothing(redis_factory, prefix):
    """C7: maxmemory with noeviction: the add is refused with OOM, nothing half-written."""
    server = redis_factory(extra_args=("--maxmemory", "3mb"))
    manager = QueueManager(server.url, prefix=prefix)
    try:
        queue = manager.create_queue("oom")
        await queue.add({"before": True}, {"jobId": "before"})
        filler = "x" * 100_000
        with pytest.raises(OutOfMemoryError):
            for i in range(200):
                await manager.client.set(f"{prefix}:fill:{i}", filler)
        await manager.client.config_set("maxmemory", "1mb")  # well below what is used now
        with pytest.raises(OutOfMemoryError):
            await queue.add({"big": True}, {"jobId": "during"})
        assert not await manager.client.exists(queue.keys.job("during"))
        stats = await queue.get_stats()
        assert stats.waiting == 1
        # Plain reads still answer (queue.get_job uses MULTI, which an OOM Redis refuses).
        assert await manager.client.hget(queue.keys.job("before"), "data") == '{"before":true}'
    finally:
        await manager.close_all()


async def test_instance_started_before_redis_waits_and_then_works(ledger_server, prefix):
    """C2: an engine process started while Redis is absent keeps running and serves once
    Redis appears."""
    server = RedisServer()
    config = {
        "url": server.url,
        "prefix": prefix,
        "queues": ["c2"],
        "every_ms": 0,
        "lease": {"ttl_ms": 1500, "renew_interval_ms": 400, "margin_ms": 300},
        "ledger_url": ledger_server.url,
        "instance": "c2",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.chaos.runner", json.dumps(config),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.sleep(1.5)
        assert proc.returncode is None, "the instance exited while Redis was absent"
        await asyncio.to_thread(server.start)
        producer = QueueManager(server.url, prefix=prefix)
        try:
            await producer.create_queue("c2").add_bulk([{"data": i} for i in range(10)])

            async def done():
                runs = await _ledger_runs(ledger_server, prefix, "c2")
                return len(runs) == 10

            await wait_for(done, timeout_s=15)
        finally:
            await producer.close_all()
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        server.cleanup()


async def _ledger_runs(ledger_server, prefix, queue):
    client = ledger_server.client()
    try:
        return await asyncio.to_thread(client.hgetall, f"{prefix}:runs:{queue}")
    finally:
        client.close()


@pytest.fixture
def ledger_server(redis_server):
    return redis_server

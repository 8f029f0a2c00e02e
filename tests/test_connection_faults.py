"""The engine's client through a fault-injecting TCP proxy: resets heal, a black hole
costs one socket timeout (never a hang), delay only slows things down."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from redis.exceptions import ConnectionError, TimeoutError

from engine import QueueManager
from engine.connection import RedisSettings
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

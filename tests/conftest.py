"""Fixtures: private redis-server processes and per-test key prefixes.

Tests never touch a shared Redis and never flush one: the session server is private,
and every test gets its own hash-tagged prefix. A test that kills, freezes or restarts
Redis asks ``redis_factory`` for a server of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from engine import QueueManager
from tests.redis_servers import RedisCluster, RedisServer, redis_server_binary


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    redis_server_binary()  # fail loudly with the install hint, never skip
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start extra private servers; all are stopped and removed after the test."""
    started: list[RedisServer] = []

    def start(**kwargs: object) -> RedisServer:
        server = RedisServer(**kwargs).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.cleanup()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield c
    await c.aclose()


@pytest.fixture
async def manager(redis_server: RedisServer, prefix: str) -> AsyncIterator[QueueManager]:
    m = QueueManager(redis_server.url, prefix=prefix)
    yield m
    await m.close_all()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A private 3-master Redis Cluster, shared by the session's cluster tests."""
    cluster = RedisCluster(3).start()
    yield cluster
    cluster.cleanup()

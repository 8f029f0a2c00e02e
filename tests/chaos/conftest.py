"""Chaos fixtures: a ledger Redis that no scenario faults, and per-scenario servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.redis_server import RedisServer


@pytest.fixture(scope="session")
def ledger() -> Iterator[RedisServer]:
    """Where instances record every run; separate from the Redis under test."""
    server = RedisServer().start()
    yield server
    server.cleanup()

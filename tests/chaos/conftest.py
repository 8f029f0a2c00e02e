"""Chaos fixtures: a ledger Redis that no scenario faults, and per-scenario servers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.redis_servers import RedisServer


@pytest.fixture(scope="session")
def ledger() -> Iterator[RedisServer]:
    """Where instances record every run; separate from the Redis under test."""
    server = RedisServer().start()
    yield server
    server.cleanup()


# The long suite runs only under `make chaos` (CHAOS_LONG=1), never in `make test`.
collect_ignore = [] if os.environ.get("CHAOS_LONG") == "1" else ["test_chaos_long.py"]

"""Connection settings and the one place that builds the Redis client."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How to reach Redis. Durations carry their unit in the name."""

    url: str = DEFAULT_REDIS_URL
    socket_timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    retries: int = 1
    health_check_interval_s: float = 15.0

    def __post_init__(self) -> None:
        scheme = urlsplit(self.url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"REDIS_URL must start with redis://, rediss:// or unix://, got {scheme!r}"
            )
        if self.socket_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("socket_timeout_s and connect_timeout_s must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RedisSettings:
        """Read ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``)."""
        env = os.environ if env is None else env
        return cls(url=env.get("REDIS_URL") or DEFAULT_REDIS_URL)

    @property
    def redacted_url(self) -> str:
        """The URL with any password replaced, safe to log."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def create_client(settings: RedisSettings) -> Redis:
    """A redis-py asyncio client that fails fast: short retries, bounded timeouts."""
    return Redis.from_url(
        settings.url,
        decode_responses=True,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.connect_timeout_s,
        health_check_interval=settings.health_check_interval_s,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), settings.retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )

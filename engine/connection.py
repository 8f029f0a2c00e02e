"""Connection settings and the one place that builds the Redis client.

Every deployment a user may have is a URL:

- ``redis://[user:password@]host:port/db`` and ``rediss://...`` (TLS) for one server;
- ``unix:///path/to/redis.sock``;
- ``redis-cluster://[user:password@]host:port,host:port`` (``rediss-cluster://`` for TLS);
- ``redis-sentinel://[user:password@]host:port,host:port/<service>[/db]``
  (``rediss-sentinel://`` for TLS to the data nodes).

The rest of the engine does not care which one it got.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis-cluster",
    "rediss-cluster",
    "redis-sentinel",
    "rediss-sentinel",
)


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How to reach Redis. Durations carry their unit in the name.

    TLS files apply to ``rediss*`` URLs: ``tls_ca_file`` (CA bundle to verify the server),
    ``tls_cert_file``/``tls_key_file`` (client certificate), ``tls_verify`` (default on).
    """

    url: str = DEFAULT_REDIS_URL
    socket_timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    retries: int = 1
    health_check_interval_s: float = 15.0
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_verify: bool = True

    def __post_init__(self) -> None:
        scheme = urlsplit(self.url).scheme
        if scheme not in _SCHEMES:
            raise ValueError(
                f"REDIS_URL scheme must be one of {', '.join(_SCHEMES)}; got {scheme!r}"
            )
        if self.socket_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("socket_timeout_s and connect_timeout_s must be positive")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.kind == "sentinel" and not self._sentinel_service():
            raise ValueError("a redis-sentinel:// URL must name the service: .../<service>")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RedisSettings:
        """Read ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and the TLS files
        ``REDIS_TLS_CA_FILE``, ``REDIS_TLS_CERT_FILE``, ``REDIS_TLS_KEY_FILE``."""
        env = os.environ if env is None else env
        return cls(
            url=env.get("REDIS_URL") or DEFAULT_REDIS_URL,
            tls_ca_file=env.get("REDIS_TLS_CA_FILE") or None,
            tls_cert_file=env.get("REDIS_TLS_CERT_FILE") or None,
            tls_key_file=env.get("REDIS_TLS_KEY_FILE") or None,
        )

    @property
    def kind(self) -> str:
        """``single``, ``cluster`` or ``sentinel``."""
        scheme = urlsplit(self.url).scheme
        if scheme.endswith("-cluster"):
            return "cluster"
        if scheme.endswith("-sentinel"):
            return "sentinel"
        return "single"

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme.startswith("rediss")

    @property
    def redacted_url(self) -> str:
        """The URL with any password replaced, safe to log."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit((parts.scheme, user + netloc, parts.path, parts.query, parts.fragment))

    def _hosts(self) -> list[tuple[str, int]]:
        netloc = urlsplit(self.url).netloc.rsplit("@", 1)[-1]
        hosts = []
        for item in netloc.split(","):
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"REDIS_URL host {item!r} must be host:port")
            hosts.append((host.strip("[]"), int(port)))
        return hosts

    def _credentials(self) -> dict[str, Any]:
        parts = urlsplit(self.url)
        out: dict[str, Any] = {}
        if parts.username:
            out["username"] = unquote(parts.username)
        if parts.password is not None:
            out["password"] = unquote(parts.password)
        return out

    def _sentinel_service(self) -> str:
        return urlsplit(self.url).path.strip("/").split("/")[0]

    def _tls_kwargs(self) -> dict[str, Any]:
        if not self.tls:
            return {}
        return {
            "ssl": True,
            "ssl_ca_certs": self.tls_ca_file,
            "ssl_certfile": self.tls_cert_file,
            "ssl_keyfile": self.tls_key_file,
            "ssl_cert_reqs": "required" if self.tls_verify else "none",
        }


def create_client(settings: RedisSettings, *, socket_timeout_s: float | None = None) -> Any:
    """A redis-py asyncio client that fails fast: short retries, bounded timeouts.

    ``socket_timeout_s`` overrides the settings, e.g. for a connection that blocks on
    BZPOPMIN longer than the normal command timeout.
    """
    timeout = settings.socket_timeout_s if socket_timeout_s is None else socket_timeout_s
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": settings.connect_timeout_s,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), settings.retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    kind = settings.kind
    if kind == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in settings._hosts()],
            **common,
            **settings._credentials(),
            **settings._tls_kwargs(),
        )
    if kind == "sentinel":
        path = urlsplit(settings.url).path.strip("/").split("/")
        db = int(path[1]) if len(path) > 1 and path[1] else 0
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            settings._hosts(),
            sentinel_kwargs={"socket_timeout": settings.connect_timeout_s},
            **common,
            **settings._credentials(),
            **settings._tls_kwargs(),
        )
        return sentinel.master_for(settings._sentinel_service(), db=db)
    tls_kwargs = settings._tls_kwargs()
    tls_kwargs.pop("ssl", None)  # implied by the rediss:// scheme
    return Redis.from_url(
        settings.url,
        health_check_interval=settings.health_check_interval_s,
        **common,
        **{k: v for k, v in tls_kwargs.items() if v is not None},
    )

"""Connection settings and the one place that builds the Redis client.

Every deployment a user may have is a URL:

- ``redis://[user:password@]host:port/db`` and ``rediss://...`` (TLS) for one server;
- ``unix:///path/to/redis.sock``;
- ``redis-cluster://[user:password@]host:port,host:port`` (``rediss-cluster://`` for TLS);
- ``redis-sentinel://[user:password@]host:port,host:port/<service>[/db]``
  (``rediss-sentinel://`` for TLS to the data nodes).

The rest of the engine does not care which one it got.

Replica acknowledgement (``wait_replicas``): Redis replicates asynchronously, so a write
acknowledged by a primary that dies a moment later may never reach the replica that
replaces it. With ``wait_replicas = N`` every job add (and every schedule fire) is followed,
in the same pipeline and so on the same connection, by ``WAIT N wait_timeout_ms``: the
call returns only once N replicas have the write, or raises :class:`ReplicationTimeout`
(the write *is* on the primary; re-adding with the same ``job_id`` is safe). It narrows
the loss window of a failover; it does not close it: WAIT is not a consensus protocol, a
replica that acknowledged may still not be the one promoted, and a worker may take a job
from the primary before WAIT returns. See docs/OPERATIONS.md for measured figures.
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
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .scripts import _QUEUED, EncodableArg, LuaScript

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
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000

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
        if self.wait_replicas < 0:
            raise ValueError(f"wait_replicas must be >= 0, got {self.wait_replicas}")
        if self.wait_replicas and not 0 < self.wait_timeout_ms < self.socket_timeout_s * 1000:
            # WAIT 0 blocks forever, and a WAIT longer than the socket timeout would be
            # cut off by the client and read as a connection failure.
            raise ValueError(
                f"wait_timeout_ms must be positive and below socket_timeout_s "
                f"({self.socket_timeout_s * 1000:.0f} ms), got {self.wait_timeout_ms}"
            )
        if self.kind == "sentinel" and not self._sentinel_service():
            raise ValueError("a redis-sentinel:// URL must name the service: .../<service>")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RedisSettings:
        """Read ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), the TLS files
        ``REDIS_TLS_CA_FILE``, ``REDIS_TLS_CERT_FILE``, ``REDIS_TLS_KEY_FILE``, and
        ``REDIS_WAIT_REPLICAS`` / ``REDIS_WAIT_TIMEOUT_MS``."""
        env = os.environ if env is None else env

        def integer(name: str, default: int) -> int:
            raw = env.get(name) or str(default)
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"{name} must be an integer, got {raw!r}") from None

        return cls(
            url=env.get("REDIS_URL") or DEFAULT_REDIS_URL,
            tls_ca_file=env.get("REDIS_TLS_CA_FILE") or None,
            tls_cert_file=env.get("REDIS_TLS_CERT_FILE") or None,
            tls_key_file=env.get("REDIS_TLS_KEY_FILE") or None,
            wait_replicas=integer("REDIS_WAIT_REPLICAS", 0),
            wait_timeout_ms=integer("REDIS_WAIT_TIMEOUT_MS", 1000),
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
    def resend_window_ms(self) -> int:
        """How long after a script call a copy of it may still reach Redis: every attempt
        redis-py makes (1 + ``retries``) may spend a connect and a socket timeout, and
        Redis may run the first copy that long after it was sent. Twice that, at least
        10 s: the lifetime of a call's reply record (``lua/include/request.lua``)."""
        attempt_s = self.connect_timeout_s + self.socket_timeout_s
        return max(10_000, int(2 * (self.retries + 1) * attempt_s * 1000))

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


class _SentinelManagedRedis(Redis):
    """The master's client; closing it also closes the connections to the sentinels."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


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
        client = sentinel.master_for(
            settings._sentinel_service(), redis_class=_SentinelManagedRedis, db=db
        )
        client.sentinel_manager = sentinel
        return client
    tls_kwargs = settings._tls_kwargs()
    tls_kwargs.pop("ssl", None)  # implied by the rediss:// scheme
    return Redis.from_url(
        settings.url,
        health_check_interval=settings.health_check_interval_s,
        **common,
        **{k: v for k, v in tls_kwargs.items() if v is not None},
    )


def queue_on_key_node(pipe: Any, key: str, *command: EncodableArg) -> None:
    """Queue a keyless command (``TIME``, ``WAIT``) on a pipeline. On a Cluster it goes
    to the node serving ``key``'s slot (the node whose clock the scripts read, or whose
    replicas a WAIT is about); redis-py refuses ``pipe.time()`` on a Cluster pipeline."""
    cluster = getattr(pipe, "cluster_client", None)
    if cluster is None:
        pipe.execute_command(*command)
    else:
        pipe.execute_command(*command, target_nodes=cluster.get_node_from_key(key))


def _queue_wait(pipe: Any, replicas: int, timeout_ms: int, key: str) -> None:
    queue_on_key_node(pipe, key, "WAIT", replicas, timeout_ms)


async def execute_acked(
    client: Any, pipe: Any, replicas: int, timeout_ms: int, key: str
) -> tuple[list[Any], int]:
    """Run ``pipe`` (script calls on ``key``'s slot) followed by ``WAIT replicas
    timeout_ms`` on the same connection; returns the results and the number of replicas
    that acknowledged every write (the minimum over rounds).

    Like :func:`engine.scripts.execute`, calls that came back NOSCRIPT are re-sent, here
    as EVAL in a second pipeline with its own WAIT, because WAIT only covers writes made
    on its own connection.
    """
    queued: dict[int, tuple[LuaScript, Any, Any]] = pipe.__dict__.pop(_QUEUED, {})
    _queue_wait(pipe, replicas, timeout_ms, key)
    results: list[Any] = list(await pipe.execute(raise_on_error=False))
    acked = results.pop()
    retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError) and i in queued]
    if retry:
        async with client.pipeline(transaction=False) as again:
            for i in retry:
                script, keys, args = queued[i]
                again.execute_command("EVAL", script.source, len(keys), *keys, *args)
            _queue_wait(again, replicas, timeout_ms, key)
            second = list(await again.execute(raise_on_error=False))
        acked2 = second.pop()
        for i, result in zip(retry, second, strict=True):
            results[i] = result
        if isinstance(acked2, Exception) or isinstance(acked, Exception):
            acked = acked if isinstance(acked, Exception) else acked2
        else:
            acked = min(acked, acked2)
    for result in [*results, acked]:
        if isinstance(result, Exception):
            raise result
    return results, int(acked)

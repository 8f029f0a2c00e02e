"""Startup checks: refuse a Redis or a timing configuration the engine cannot be safe on,
and warn loudly about settings that make Redis itself drop data.

- Redis older than 7.0 is refused: scripts call ``TIME`` before writing, which needs
  effects replication (the 7.0 default), and the engine relies on 7.0 command forms.
- ``maxmemory-policy`` other than ``noeviction`` lets Redis evict job hashes and
  sorted-set members under memory pressure: jobs vanish without trace. That is a loud
  warning, not a refusal, because a managed Redis may not let the operator change it.
  Under a least-privilege ACL user ``CONFIG GET`` is refused; then the report says the
  policy could not be checked instead of guessing.
- Leases: :class:`engine.lock.LeaseConfig` validates its own fields (renew at most every
  TTL/3, margin below the TTL). What it cannot see is the Redis client: a renewal that
  is sent on time but hangs until the socket timeout must still fail *before* the lease
  lapses, or one slow reply costs the lease every time (a leader that flaps; a job lease
  that lapses while its job runs, so the job runs twice). :func:`check_lease_timing`
  refuses that combination.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoPermissionError, ResponseError

from .connection import RedisSettings
from .errors import StartupCheckError

logger = logging.getLogger("engine.checks")

MIN_REDIS_VERSION = (7, 0)


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What :func:`check_redis` found. ``maxmemory_policy`` is ``None`` when it could
    not be read (ACL); ``warnings`` were also logged at WARNING level."""

    redis_versions: tuple[str, ...]
    maxmemory_policies: tuple[str, ...] | None
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.warnings


def _per_node(reply: Any, field: str) -> list[str]:
    """Cluster clients answer ``{node: {field: value}}``, single ones ``{field: value}``."""
    if field in reply:
        return [str(reply[field])]
    return [str(v[field]) for v in reply.values() if isinstance(v, dict) and field in v]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


def _is_cluster(client: Any) -> bool:
    return hasattr(client, "get_node_from_key")


async def check_redis(client: Any) -> CheckReport:
    """Refuse Redis < 7.0 (``StartupCheckError``); warn when ``maxmemory-policy`` is not
    ``noeviction`` or cannot be read. On a Cluster every master is checked."""
    kwargs: dict[str, Any] = {"target_nodes": "primaries"} if _is_cluster(client) else {}
    try:
        versions = _per_node(await client.info("server", **kwargs), "redis_version")
    except NoPermissionError:
        # INFO is @dangerous; HELLO (the connection handshake) is allowed to every user
        # and names the version of the server this connection reached.
        hello = await client.execute_command("HELLO")
        fields = (
            dict(zip(hello[::2], hello[1::2], strict=True)) if isinstance(hello, list) else hello
        )
        versions = [str(fields["version"])]
    if not versions:
        raise StartupCheckError("Redis did not report its version (INFO server)")
    for version in versions:
        if _version_tuple(version) < MIN_REDIS_VERSION:
            raise StartupCheckError(
                f"Redis {version} is too old: the engine needs Redis >= "
                f"{'.'.join(map(str, MIN_REDIS_VERSION))} (scripts read TIME before "
                "writing, which needs effects replication)"
            )
    warnings: list[str] = []
    policies: tuple[str, ...] | None
    try:
        reply = await client.config_get("maxmemory-policy", **kwargs)
        policies = tuple(_per_node(reply, "maxmemory-policy"))
    except (NoPermissionError, ResponseError) as exc:
        # ResponseError too: managed services rename or disable CONFIG outright.
        policies = None
        warnings.append(
            "maxmemory-policy could not be checked (CONFIG GET refused: "
            f"{exc}); make sure it is 'noeviction', or Redis may evict jobs"
        )
    if policies is not None:
        bad = sorted({p for p in policies if p != "noeviction"})
        if bad:
            warnings.append(
                f"Redis maxmemory-policy is {', '.join(bad)}: under memory pressure Redis "
                "will EVICT job data and jobs will be lost without trace. Set "
                "'maxmemory-policy noeviction' (the only safe policy for a job queue)"
            )
    for message in warnings:
        logger.warning("%s", message)
    return CheckReport(tuple(versions), policies, tuple(warnings))


def command_budget_ms(settings: RedisSettings) -> int:
    """How long one command attempt may block before the client gives up on it."""
    return int(settings.socket_timeout_s * 1000)


def check_lease_timing(
    what: str, ttl_ms: int, renew_interval_ms: int, margin_ms: int, settings: RedisSettings
) -> None:
    """Refuse lease timings under which a renewal sent on time, that then hangs until
    the socket timeout, outlives the holder's validity (``ttl - margin``). ``what``
    names the lease in the error (e.g. ``scheduler lease``)."""
    budget = command_budget_ms(settings)
    if renew_interval_ms + budget >= ttl_ms - margin_ms:
        raise StartupCheckError(
            f"{what}: renew interval ({renew_interval_ms} ms) + Redis socket timeout "
            f"({budget} ms) must be below ttl - margin ({ttl_ms - margin_ms} ms): a single "
            "slow renewal would let the lease lapse while its holder still acts on it. "
            "Raise the TTL or lower socket_timeout_s / the renew interval"
        )


def check_leader_lease(lease: Any, settings: RedisSettings) -> None:
    """:func:`check_lease_timing` for an :class:`engine.lock.LeaseConfig` (which has
    already validated its own fields)."""
    check_lease_timing(
        "scheduler leader lease", lease.ttl_ms, lease.renew_interval_ms, lease.margin_ms, settings
    )

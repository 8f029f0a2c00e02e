"""Typed application and request keys, and what the API is configured with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from ..job import Job
from ..manager import QueueManager
from .auth import AuthConfig, Principal


class RunAction(Protocol):
    """A ``run now`` action: given the actor (token subject) and, optionally, the request's
    ``Idempotency-Key``, enqueue one manual run (the same job again for a key seen before)."""

    def __call__(self, actor: str, idempotency_key: str | None = None) -> Awaitable[Job]: ...


# Reads every declared schedule with its next fire time and state (JSON-ready dicts).
ScheduleReader = Callable[[], Awaitable[list[dict[str, Any]]]]

DEFAULT_BODY_LIMIT = 64 * 1024
DEFAULT_REQUEST_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class RunTarget:
    """A scheduler that can be fired by hand: ``POST /api/queues/<name>/run``."""

    name: str
    queue: str
    label: str
    run: RunAction


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """When ``/api/queues/health`` says ``degraded`` instead of ``healthy``.

    ``failed_window_ms``/``failed_threshold``: that many failures finished within the
    window (a ZCOUNT on ``failed``, O(log n)). ``waiting_threshold``: a backlog that large.
    A queue with schedules and no current leader is degraded too.
    """

    failed_window_ms: int = 5 * 60 * 1000
    failed_threshold: int = 10
    waiting_threshold: int = 1000

    def __post_init__(self) -> None:
        if self.failed_window_ms < 1 or self.failed_threshold < 1 or self.waiting_threshold < 1:
            raise ValueError("health thresholds must be positive")


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Limits of the HTTP layer. ``request_timeout_s`` bounds the Redis work of one
    request, so a frozen Redis gives a 503 instead of a hanging client."""

    body_limit: int = DEFAULT_BODY_LIMIT
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    health: HealthPolicy = field(default_factory=HealthPolicy)

    def __post_init__(self) -> None:
        if self.body_limit < 1024:
            raise ValueError("body_limit must be at least 1024 bytes")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be positive")


MANAGER = web.AppKey("manager", QueueManager)
AUTH = web.AppKey("auth", AuthConfig)
SETTINGS = web.AppKey("settings", ApiSettings)
RUN_TARGETS = web.AppKey[Mapping[str, RunTarget]]("run_targets")
SCHEDULES = web.AppKey[ScheduleReader | None]("schedules")
# route name -> access level ("public", "read", "admin"), filled from the routes table
ACCESS = web.AppKey[Mapping[str, str]]("access")
# route name -> the query parameters it accepts (from the OpenAPI document); others are 400
QUERY_PARAMS = web.AppKey[Mapping[str, frozenset[str]]]("query_params")

PRINCIPAL = web.RequestKey("principal", Principal)
OPENAPI_DOC = web.AppKey[dict[str, Any]]("openapi")

"""What every queue, worker and scheduler of one manager shares: client, scripts, limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .keys import QueueKeys
from .scripts import Scripts

DEFAULT_MAX_EVENTS = 10_000
DEFAULT_MAX_LOG_LINES = 100
# How long a script call's reply record (lua/include/request.lua) outlives the call: longer
# than any resend can come after the first copy ran. RedisSettings.resend_window_ms derives
# it from the client's timeouts and retries.
DEFAULT_RESEND_WINDOW_MS = 60_000


@dataclass(slots=True)
class Store:
    """A Redis client with the engine's scripts registered on it, plus storage limits."""

    client: Any
    prefix: str = "engine"
    max_events: int = DEFAULT_MAX_EVENTS
    max_log_lines: int = DEFAULT_MAX_LOG_LINES
    resend_window_ms: int = DEFAULT_RESEND_WINDOW_MS
    scripts: Scripts = field(init=False)

    def __post_init__(self) -> None:
        if self.max_events < 1 or self.max_log_lines < 1:
            raise ValueError("max_events and max_log_lines must be at least 1")
        if self.resend_window_ms < 1000:
            raise ValueError("resend_window_ms must be at least 1000")
        self.scripts = Scripts(self.client)

    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.prefix, queue)

"""Outage tracking: one task's view of whether Redis answers, with capped backoff.

Each task of a worker (the exchange, the lease keeper, stalled recovery, close) owns its
own :class:`Outage`, so its "unavailable" / "restored" lines come in one pair per outage
and never flap because another task succeeded meanwhile.
"""

from __future__ import annotations

import logging
import random

from redis.exceptions import ReadOnlyError, RedisError, ResponseError

logger = logging.getLogger("engine.worker")

REDIS_ERRORS = (RedisError, OSError)


class Outage:
    """Capped exponential backoff for Redis errors, logged once per outage."""

    def __init__(self, what: str, cap_s: float) -> None:
        self.what = what
        self.cap_s = cap_s
        self.down = False
        self.failures = 0

    def failed(self, exc: BaseException) -> float:
        """Record a failure; returns how long to wait before trying again (s)."""
        if not self.down:
            self.down = True
            if isinstance(exc, ResponseError) and not isinstance(exc, ReadOnlyError):
                logger.error("Redis error in %s: %r; retrying with backoff", self.what, exc)
            else:
                logger.warning(
                    "Redis unavailable for %s (%s); retrying with backoff", self.what, exc
                )
        self.failures += 1
        delay = min(self.cap_s, 0.05 * float(2 ** min(self.failures, 20)))
        return delay * (0.5 + random.random() / 2)

    def ok(self) -> None:
        if self.down:
            logger.warning("Redis connection restored for %s", self.what)
        self.down = False
        self.failures = 0

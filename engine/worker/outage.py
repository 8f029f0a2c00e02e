"""Outage tracking: one task's view of whether Redis answers, with capped backoff.

Each task of a worker (the exchange, the lease keeper, stalled recovery, close) owns its
own :class:`Outage`, so its "unavailable" / "restored" lines come in one pair per outage
and never flap because another task succeeded meanwhile.
"""

from __future__ import annotations

import enum
import logging
import random

from redis import exceptions as rx

logger = logging.getLogger("engine.worker")

REDIS_ERRORS = (rx.RedisError, OSError)


class Verdict(enum.Enum):
    """What a Redis error says about the call that got it."""

    UNKNOWN = "unknown"  # connection lost or timed out: it may have been applied; resend
    REFUSED = "refused"  # Redis refused it before running it: not applied; back off, resend
    BROKEN = "broken"  # a script error or bad data: resending the same call will not help


# Error codes Redis answers before a command (or a script, before its first write) runs.
_REFUSALS = frozenset(
    {
        "OOM",
        "NOREPLICAS",
        "BUSY",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MASTERDOWN",
        "LOADING",
        "READONLY",
        "MOVED",
        "ASK",
        "MISCONF",
        "NOSCRIPT",
        "NOTBUSY",
        "UNBLOCKED",
    }
)
_REFUSAL_CLASSES = (
    rx.BusyLoadingError,  # before ConnectionError: LOADING is a refusal
    rx.ReadOnlyError,
    rx.OutOfMemoryError,
    rx.TryAgainError,
    rx.ClusterDownError,
    rx.MasterDownError,
    rx.MovedError,
    rx.AskError,
    rx.NoScriptError,
    rx.SlotNotCoveredError,
)


def classify(exc: BaseException) -> Verdict:
    """The one place a Redis error is judged (see docs/ARCHITECTURE.md, "Resend rule")."""
    if isinstance(exc, _REFUSAL_CLASSES):
        return Verdict.REFUSED
    if isinstance(exc, rx.ConnectionError | rx.TimeoutError | OSError | TimeoutError):
        return Verdict.UNKNOWN
    if isinstance(exc, rx.ResponseError):
        code = str(exc).split(" ", 1)[0]
        return Verdict.REFUSED if code in _REFUSALS else Verdict.BROKEN
    if isinstance(exc, rx.RedisError):
        # redis-py's own errors (a connection torn down mid-reply, a cluster client with
        # no node for the slot): nothing says the call did not run.
        return Verdict.UNKNOWN
    return Verdict.BROKEN


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
            verdict = classify(exc)
            if verdict is Verdict.BROKEN:
                logger.error("Redis error in %s: %r; retrying with backoff", self.what, exc)
            elif verdict is Verdict.REFUSED:
                logger.warning("Redis refused %s (%s); retrying with backoff", self.what, exc)
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

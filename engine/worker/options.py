"""How a worker runs: :class:`WorkerOptions` and :class:`RateLimit`, validated once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..job import Job

BackoffStrategy = Callable[[int, BaseException, Job], int]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``max`` jobs of the queue start per ``duration_ms`` (sliding window), across
    every instance. Workers of one queue should agree on it."""

    max: int
    duration_ms: int

    def __post_init__(self) -> None:
        for name, value in (
            ("rate_limit.max", self.max),
            ("rate_limit.duration_ms", self.duration_ms),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker runs. Durations carry their unit; ``renew_interval_ms`` defaults to a
    third of the lease. ``backoff_strategy(attempts_made, error, job) -> delay_ms`` serves
    jobs whose backoff type is ``custom``. ``claim_timeout_ms`` (default 5 s, at most the
    lease) bounds how long a job claimed but not yet confirmed running (the worker froze
    or died right after Redis ran its claim) stays out of play."""

    concurrency: int = 1
    lease_ms: int = 30_000
    renew_interval_ms: int | None = None
    stalled_interval_ms: int = 30_000
    max_stalled_count: int = 1
    block_timeout_s: float = 5.0
    fetch_batch: int = 100
    rate_limit: RateLimit | None = None
    backoff_strategy: BackoffStrategy | None = None
    use_process_pool: bool = False
    pool_size: int | None = None
    max_stack_traces: int = 10
    reconnect_max_s: float = 5.0
    retention_batch: int = 1000
    promote_batch: int = 1000
    claim_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        ints = (
            ("concurrency", self.concurrency, 1, 10_000),
            ("lease_ms", self.lease_ms, 100, 24 * 3600 * 1000),
            ("stalled_interval_ms", self.stalled_interval_ms, 10, 24 * 3600 * 1000),
            ("max_stalled_count", self.max_stalled_count, 0, 1000),
            ("fetch_batch", self.fetch_batch, 1, 10_000),
            ("max_stack_traces", self.max_stack_traces, 1, 1000),
            # Scripts slice their commands (Lua's unpack fails past ~8000 values), but a
            # call's run time grows with its batch: these bound it.
            ("retention_batch", self.retention_batch, 1, 10_000),
            ("promote_batch", self.promote_batch, 1, 10_000),
        )
        for name, value, lo, hi in ints:
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer between {lo} and {hi}, got {value!r}")
        renew = self.renew_ms
        if isinstance(renew, bool) or not isinstance(renew, int) or renew < 10:
            raise ValueError(f"renew_interval_ms must be an integer >= 10, got {renew!r}")
        if renew * 2 > self.lease_ms:
            # Renewing at most every half lease leaves one missed renewal of slack.
            raise ValueError(
                f"renew_interval_ms ({renew}) must be at most half of lease_ms ({self.lease_ms})"
            )
        claim = self.claim_timeout_ms
        if claim is not None and (
            isinstance(claim, bool)
            or not isinstance(claim, int)
            or not 30 <= claim <= self.lease_ms
        ):
            raise ValueError(
                f"claim_timeout_ms must be an integer between 30 and lease_ms ({self.lease_ms}), "
                f"got {claim!r}"
            )
        for name, fvalue in (
            ("block_timeout_s", self.block_timeout_s),
            ("reconnect_max_s", self.reconnect_max_s),
        ):
            if isinstance(fvalue, bool) or not isinstance(fvalue, int | float) or fvalue <= 0:
                raise ValueError(f"{name} must be a positive number, got {fvalue!r}")
        if self.pool_size is not None and (
            isinstance(self.pool_size, bool)
            or not isinstance(self.pool_size, int)
            or self.pool_size < 1
        ):
            raise ValueError(f"pool_size must be a positive integer, got {self.pool_size!r}")
        if self.backoff_strategy is not None and not callable(self.backoff_strategy):
            raise ValueError("backoff_strategy must be callable")
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise ValueError("rate_limit must be a RateLimit(max, duration_ms)")

    @property
    def claim_ms(self) -> int:
        """The claim deadline in force: ``claim_timeout_ms``, or 5 s capped by the lease."""
        return min(5000, self.lease_ms) if self.claim_timeout_ms is None else self.claim_timeout_ms

    @property
    def renew_ms(self) -> int:
        return self.lease_ms // 3 if self.renew_interval_ms is None else self.renew_interval_ms

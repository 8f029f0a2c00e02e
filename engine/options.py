"""Typed job options, validated once at the boundary.

Option dicts may use snake_case or the seed's camelCase (``jobId``, ``removeOnComplete``);
everything past this module works with the frozen dataclasses only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from .dedup import Deduplication
from .keys import validate_job_id

logger = logging.getLogger("engine.options")

MAX_PRIORITY = 2_097_151  # priority * 2**32 + sequence must stay exact in a double
MAX_DELAY_MS = 10 * 365 * 24 * 3600 * 1000
MAX_ATTEMPTS = 1000
MAX_TIMEOUT_MS = 7 * 24 * 3600 * 1000
MAX_REPEAT_LIMIT = 10**9  # fires of one schedule, at most
# Finished jobs kept when the user says nothing: bounded by default, never unbounded.
DEFAULT_KEEP_COMPLETED = 1000
DEFAULT_KEEP_FAILED = 5000

BackoffType = Literal["fixed", "exponential", "custom"]

_ALIASES = {
    "jobId": "job_id",
    "removeOnComplete": "remove_on_complete",
    "removeOnFail": "remove_on_fail",
    # BullMQ's deprecated name for `deduplication`, with the same meaning there.
    "debounce": "deduplication",
}
# Options of Bull / BullMQ this engine does not implement, and which change nothing a
# consumer relies on (ordering hints, log and trace limits, bookkeeping): accepted and
# ignored, with one warning per name per process, so Bull-shaped producers keep working.
BULL_IGNORED = frozenset(
    {
        "lifo",
        "keepLogs",
        "stackTraceLimit",
        "sizeLimit",
        "timestamp",
        "prevMillis",
        "preventParsingData",
        "rateLimiterKey",
        "failParentOnFailure",
        "ignoreDependencyOnFailure",
        "removeDependencyOnFailure",
        "continueParentOnFailure",
    }
)
# Bull / BullMQ options whose meaning a job would silently lose: refused when adding.
BULL_REFUSED = {
    "repeat": "QueueManager.add_job turns it into a schedule (or use engine.schedulers.upsert)",
    "repeatJobKey": "use a schedule",
    "parent": "job flows are not supported",
}
_warned: set[str] = set()


def _ignore(name: str, why: str) -> None:
    if name not in _warned:
        _warned.add(name)
        logger.warning(
            "Job option %r is not supported by this engine and is ignored (%s)", name, why
        )


_FIELDS = (
    "attempts",
    "backoff",
    "delay",
    "priority",
    "job_id",
    "timeout",
    "remove_on_complete",
    "remove_on_fail",
    "telemetry",
    "deduplication",
)


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    # bool is an int subclass; ``attempts=True`` is a bug, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return int(value)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay between attempts: ``fixed`` (delay each time), ``exponential`` (delay * 2**(n-1))
    or ``custom`` (the worker's ``backoff_strategy``). ``jitter`` in 0..1 spreads retries."""

    type: BackoffType = "fixed"
    delay: int = 0
    jitter: float = 0.0

    @classmethod
    def parse(cls, value: Any) -> Backoff:
        if isinstance(value, Backoff):
            return value
        if isinstance(value, bool):
            raise ValueError(f"backoff must be a number of ms or an object, got {value!r}")
        if isinstance(value, int | float):
            return cls("fixed", _int("backoff", value, 0, MAX_DELAY_MS))
        if not isinstance(value, Mapping):
            raise ValueError(f"backoff must be a number of ms or an object, got {value!r}")
        unknown = set(value) - {"type", "delay", "jitter"}
        if unknown:
            raise ValueError(f"backoff has unknown field(s): {', '.join(sorted(unknown))}")
        kind = value.get("type", "fixed")
        if kind not in ("fixed", "exponential", "custom"):
            raise ValueError(f"backoff.type must be fixed, exponential or custom, got {kind!r}")
        delay = _int("backoff.delay", value.get("delay", 0), 0, MAX_DELAY_MS)
        jitter = value.get("jitter", 0.0)
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
            raise ValueError(f"backoff.jitter must be a number between 0 and 1, got {jitter!r}")
        return cls(kind, delay, float(jitter))

    def delay_for(self, attempts_made: int, rand: float = 0.0) -> int:
        """Delay in ms before the next try after ``attempts_made`` failed tries.

        ``rand`` in [0, 1) feeds the jitter so callers (and tests) control randomness.
        """
        if self.type == "exponential":
            base = self.delay * 2 ** max(attempts_made - 1, 0)
        else:
            base = self.delay
        base = min(base, MAX_DELAY_MS)
        return int(base * (1 - self.jitter * rand))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "delay": self.delay}
        if self.jitter:
            out["jitter"] = self.jitter
        return out


@dataclass(frozen=True, slots=True)
class Retention:
    """How many finished jobs to keep: at most ``count`` and none older than ``age_s``.

    ``None`` for both keeps everything (only when the user asks for it)."""

    count: int | None = None
    age_s: int | None = None

    @classmethod
    def parse(cls, name: str, value: Any) -> Retention:
        if isinstance(value, Retention):
            return value
        if value is True:
            return cls(count=0)
        if value is False:
            return cls()
        if isinstance(value, int | float):
            return cls(count=_int(name, value, 0, 10**9))
        if isinstance(value, Mapping):
            unknown = set(value) - {"count", "age"}
            if unknown:
                raise ValueError(f"{name} has unknown field(s): {', '.join(sorted(unknown))}")
            count = value.get("count")
            age = value.get("age")
            return cls(
                count=None if count is None else _int(f"{name}.count", count, 0, 10**9),
                age_s=None if age is None else _int(f"{name}.age", age, 0, 10 * 365 * 86400),
            )
        raise ValueError(f"{name} must be true, false, a count or {{age, count}}, got {value!r}")

    def to_json(self) -> bool | int | dict[str, int]:
        if self.count == 0 and self.age_s is None:
            return True
        if self.count is None and self.age_s is None:
            return False
        if self.age_s is None and self.count is not None:
            return self.count
        out: dict[str, int] = {}
        if self.count is not None:
            out["count"] = self.count
        if self.age_s is not None:
            out["age"] = self.age_s
        return out


@dataclass(frozen=True, slots=True)
class Telemetry:
    """BullMQ's ``telemetry`` option: ``metadata`` is the trace context carried from the add
    to the worker (set by ``engine.tracing`` when the ``otel`` extra is installed);
    ``omitContext`` leaves the job out of the producer's trace."""

    metadata: str | None = None
    omit_context: bool = False

    @classmethod
    def parse(cls, value: Any) -> Telemetry:
        if isinstance(value, Telemetry):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"telemetry must be an object, got {value!r}")
        unknown = set(value) - {"metadata", "omitContext"}
        if unknown:
            raise ValueError(f"telemetry has unknown field(s): {', '.join(sorted(unknown))}")
        metadata = value.get("metadata")
        if metadata is not None and (not isinstance(metadata, str) or len(metadata) > 4096):
            raise ValueError("telemetry.metadata must be a string of at most 4096 characters")
        omit = value.get("omitContext", False)
        if not isinstance(omit, bool):
            raise ValueError(f"telemetry.omitContext must be true or false, got {omit!r}")
        return cls(metadata, omit)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.metadata is not None:
            out["metadata"] = self.metadata
        if self.omit_context:
            out["omitContext"] = True
        return out


@dataclass(frozen=True, slots=True)
class Repeat:
    """Bull/BullMQ's ``repeat`` option: ``cron`` (or ``pattern``) or ``every`` (ms), ``tz``,
    ``startDate`` / ``endDate`` (epoch ms or ISO 8601), ``limit`` (fires in all, then the
    schedule ends). ``QueueManager.add_job`` turns a job with it into the schedule named by
    its ``jobId``."""

    cron: str | None = None
    every_ms: int | None = None
    tz: str = "UTC"
    start_ms: int | None = None
    end_ms: int | None = None
    limit: int | None = None

    @classmethod
    def parse(cls, value: Any) -> Repeat:
        if not isinstance(value, Mapping):
            raise ValueError("repeat must be a mapping")
        known = {"cron", "pattern", "every", "tz", "startDate", "endDate", "limit"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown repeat option {unknown[0]!r}")
        cron = value.get("cron", value.get("pattern"))
        every = value.get("every")
        if (cron is None) == (every is None):
            raise ValueError("repeat needs exactly one of cron (or pattern) and every")
        if every is not None:
            every = _int("repeat.every", every, 1, MAX_DELAY_MS)
        tz = value.get("tz", "UTC")
        if not isinstance(tz, str):
            raise ValueError("repeat.tz must be a time zone name")
        limit = value.get("limit")
        if limit is not None:
            limit = _int("repeat.limit", limit, 1, MAX_REPEAT_LIMIT)
        return cls(cron, every, tz, _when("repeat.startDate", value.get("startDate")),
                   _when("repeat.endDate", value.get("endDate")), limit)  # fmt: skip


def _when(name: str, raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            return int(aware.timestamp() * 1000)
    raise ValueError(f"{name} must be epoch ms or an ISO 8601 date, got {raw!r}")


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Options of one job. Build with :meth:`parse`; the constructor does not validate."""

    attempts: int = 1
    backoff: Backoff | None = None
    delay: int = 0
    priority: int = 0
    job_id: str | None = None
    timeout: int | None = None
    remove_on_complete: Retention = field(
        default_factory=lambda: Retention(count=DEFAULT_KEEP_COMPLETED)
    )
    remove_on_fail: Retention = field(default_factory=lambda: Retention(count=DEFAULT_KEEP_FAILED))
    telemetry: Telemetry | None = None
    deduplication: Deduplication | None = None  # engine/dedup.py

    @classmethod
    def parse(
        cls,
        value: Mapping[str, Any] | JobOptions | None = None,
        base: JobOptions | None = None,
        *,
        stored: bool = False,
    ) -> JobOptions:
        """Validate an option mapping (snake_case or camelCase) on top of ``base`` defaults.

        Raises ``ValueError`` naming the first unknown or invalid field. Bull options listed
        in ``BULL_IGNORED`` are ignored with a warning. With ``stored`` (options read back
        from Redis, possibly written by a newer producer) every unknown name is ignored
        with a warning, so a job never fails for an option this version does not know.
        """
        base = base or cls()
        if value is None:
            return base
        if isinstance(value, JobOptions):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"job options must be a mapping, got {type(value).__name__}")
        changes: dict[str, Any] = {}
        for raw_key, raw in value.items():
            key = _ALIASES.get(raw_key, raw_key)
            if key not in _FIELDS:
                if raw_key in BULL_IGNORED:
                    _ignore(raw_key, "a Bull option without effect here")
                    continue
                if stored:
                    _ignore(str(raw_key), "stored by another producer")
                    continue
                if raw_key in BULL_REFUSED:
                    raise ValueError(
                        f"job option {raw_key!r} (Bull) is not supported: {BULL_REFUSED[raw_key]}"
                    )
                raise ValueError(f"unknown job option {raw_key!r}")
            if key in changes:
                raise ValueError(f"job option {key!r} given twice")
            changes[key] = _parse_field(key, raw)
        return replace(base, **changes)

    def to_json(self) -> dict[str, Any]:
        """Bull's camelCase shape, with only the fields that differ from the defaults."""
        default = JobOptions()
        out: dict[str, Any] = {}
        if self.attempts != default.attempts:
            out["attempts"] = self.attempts
        if self.backoff is not None:
            out["backoff"] = self.backoff.to_json()
        if self.delay:
            out["delay"] = self.delay
        if self.priority:
            out["priority"] = self.priority
        if self.job_id is not None:
            out["jobId"] = self.job_id
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.remove_on_complete != default.remove_on_complete:
            out["removeOnComplete"] = self.remove_on_complete.to_json()
        if self.remove_on_fail != default.remove_on_fail:
            out["removeOnFail"] = self.remove_on_fail.to_json()
        if self.telemetry is not None and self.telemetry.to_json():
            out["telemetry"] = self.telemetry.to_json()
        if self.deduplication is not None:
            out["deduplication"] = self.deduplication.to_json()
        return out

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> JobOptions:
        """Rebuild options stored in a job hash: unknown names are ignored with a warning;
        a known one with an invalid value raises ``ValueError`` naming it."""
        if not isinstance(stored, Mapping):
            raise ValueError(f"job options must be a mapping, got {type(stored).__name__}")
        return cls.parse(stored, stored=True)


def _parse_field(key: str, raw: Any) -> Any:
    if key == "attempts":
        return _int("attempts", raw, 1, MAX_ATTEMPTS)
    if key == "backoff":
        return None if raw is None else Backoff.parse(raw)
    if key == "delay":
        return _int("delay", raw, 0, MAX_DELAY_MS)
    if key == "priority":
        return _int("priority", raw, 0, MAX_PRIORITY)
    if key == "job_id":
        return None if raw is None else validate_job_id(raw if isinstance(raw, str) else str(raw))
    if key == "timeout":
        return None if raw is None else _int("timeout", raw, 1, MAX_TIMEOUT_MS)
    if key == "telemetry":
        return None if raw is None else Telemetry.parse(raw)
    if key == "deduplication":
        return None if raw is None else Deduplication.parse(raw)
    return Retention.parse(key, raw)

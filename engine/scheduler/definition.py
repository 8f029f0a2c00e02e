"""What a schedule is: its definition, validated once, and its fingerprint."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import orjson

from ..cron import Schedule, parse_schedule
from ..keys import validate_queue_name
from ..options import MAX_REPEAT_LIMIT, JobOptions

MisfirePolicy = Literal["skip", "once", "all"]
OverlapPolicy = Literal["allow", "skip"]
MISFIRE_POLICIES: tuple[str, ...] = ("skip", "once", "all")
OVERLAP_POLICIES: tuple[str, ...] = ("allow", "skip")

DEFAULT_MISFIRE_GRACE_MS = 60_000
MAX_LIMIT = MAX_REPEAT_LIMIT  # fires of one schedule, at most (Bull's repeat.limit)
# Below this an on-time fire (a few ms of scheduling jitter) could count as a misfire.
MIN_MISFIRE_GRACE_MS = 100
DEFAULT_LEDGER_LEN = 1000
MAX_FIRES_PER_CALL = 200  # catch-up beyond this continues in the next call
# Dropped ticks beyond this are counted in one summary ledger entry and event, not listed
# one by one (the ledger keeps ~1000 entries: a long outage must not flush its history).
MAX_MISSED_LISTED = 100
STATE_WINDOW = 50  # ledger entries read to derive last success / consecutive failures
ERROR_BACKOFF_S = (0.05, 2.0)


def _validate_name(name: str) -> str:
    try:
        return validate_queue_name(name)
    except ValueError:
        raise ValueError(
            f"schedule name {name!r} is invalid: use 1-100 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        ) from None


@dataclass(frozen=True, slots=True)
class ScheduleDefinition:
    """A named schedule of one queue: when it fires, what job it enqueues, and its policies.

    ``misfire`` decides what happens to ticks that passed with no leader to fire them:
    ``skip`` fires none late (only the latest, and only if at most ``misfire_grace_ms``
    late), ``once`` fires one catch-up run for the latest, ``all`` fires every tick at most
    ``misfire_grace_ms`` late. ``overlap="skip"`` drops a tick while the previous run of the
    schedule is still waiting, active or backing off. Every dropped tick is a ``missed``
    event and a ledger entry. ``limit`` (Bull's ``repeat.limit``) ends the schedule once it
    has fired that many ticks in all (manual runs do not count).
    """

    name: str
    queue: str
    schedule: Schedule
    data: Any = None
    options: JobOptions = field(default_factory=JobOptions)
    misfire: MisfirePolicy = "once"
    misfire_grace_ms: int = DEFAULT_MISFIRE_GRACE_MS
    overlap: OverlapPolicy = "allow"
    job_name: str = ""
    limit: int | None = None

    def __post_init__(self) -> None:
        _validate_name(self.name)
        validate_queue_name(self.queue)
        if self.misfire not in MISFIRE_POLICIES:
            raise ValueError(f"misfire must be one of {', '.join(MISFIRE_POLICIES)}")
        if self.overlap not in OVERLAP_POLICIES:
            raise ValueError(f"overlap must be one of {', '.join(OVERLAP_POLICIES)}")
        grace = self.misfire_grace_ms
        if isinstance(grace, bool) or not isinstance(grace, int) or grace < MIN_MISFIRE_GRACE_MS:
            raise ValueError(
                f"misfire_grace_ms must be an integer of at least {MIN_MISFIRE_GRACE_MS}, "
                f"got {grace!r}"
            )
        limit = self.limit
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT
        ):
            raise ValueError(f"limit must be an integer between 1 and {MAX_LIMIT}, got {limit!r}")
        if self.options.job_id is not None:
            raise ValueError("job options of a schedule may not set job_id (it is <name>:<tick>)")
        if self.options.delay:
            raise ValueError("job options of a schedule may not set delay")
        if not isinstance(self.job_name, str) or len(self.job_name) > 200:
            raise ValueError("job_name must be a string of at most 200 characters")
        try:
            orjson.dumps(self.data)
        except TypeError as exc:
            raise ValueError(f"data must be JSON-serialisable: {exc}") from None

    @property
    def effective_job_name(self) -> str:
        return self.job_name or self.name

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "queue": self.queue,
            "schedule": self.schedule.to_dict(),
            "data": self.data,
            "options": self.options.to_json(),
            "misfire": self.misfire,
            "misfire_grace_ms": self.misfire_grace_ms,
            "overlap": self.overlap,
            "job_name": self.job_name,
        }
        if self.limit is not None:  # absent otherwise: older fingerprints stay the same
            out["limit"] = self.limit
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScheduleDefinition:
        return cls(
            name=d["name"],
            queue=d["queue"],
            schedule=Schedule.from_dict(d["schedule"]),
            data=d.get("data"),
            options=JobOptions.parse(d.get("options") or {}),
            misfire=d.get("misfire", "once"),
            misfire_grace_ms=d.get("misfire_grace_ms", DEFAULT_MISFIRE_GRACE_MS),
            overlap=d.get("overlap", "allow"),
            job_name=d.get("job_name", ""),
            limit=d.get("limit"),
        )

    def fingerprint(self) -> str:
        """Stable across instances: same definition, same fingerprint."""
        canonical = orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(canonical).hexdigest()[:32]


def define_schedule(
    name: str,
    queue: str,
    *,
    cron: str | None = None,
    every_ms: int | None = None,
    tz: str = "UTC",
    start_ms: int | None = None,
    end_ms: int | None = None,
    data: Any = None,
    opts: Mapping[str, Any] | JobOptions | None = None,
    misfire: str = "once",
    misfire_grace_ms: int = DEFAULT_MISFIRE_GRACE_MS,
    overlap: str = "allow",
    job_name: str = "",
    limit: int | None = None,
) -> ScheduleDefinition:
    """Validate everything once and build a :class:`ScheduleDefinition`.

    Raises ``ValueError`` (``InvalidCron`` for the cron / zone / interval) naming the field.
    """
    schedule = parse_schedule(cron=cron, every_ms=every_ms, tz=tz, start_ms=start_ms, end_ms=end_ms)
    return ScheduleDefinition(
        name=name,
        queue=queue,
        schedule=schedule,
        data=data,
        options=JobOptions.parse(opts),
        misfire=cast(MisfirePolicy, misfire),
        misfire_grace_ms=misfire_grace_ms,
        overlap=cast(OverlapPolicy, overlap),
        job_name=job_name,
        limit=limit,
    )

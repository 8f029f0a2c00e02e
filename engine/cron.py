"""Cron and fixed-interval schedules: validation at registration, next fire times in epoch ms.

Pure (no Redis, no clock): every answer is a function of the schedule and the ``after_ms``
it is given, so the leader can ask on every tick and any node gets the same answer.

Expressions have 5 fields (``min hour dom month dow``) or 6 with the seconds FIRST
(``sec min hour dom month dow``, as BullMQ/cron-parser write them); names (``MON``,
``JAN``) and the croniter aliases (``@hourly``, ``@daily``, ...) are accepted. croniter
matches the fields; two of its answers are replaced by classic (Vixie/Debian) cron ones:

* A one-value range ``N-N`` (also ``N-N/s``, inside lists) means ``N``. croniter 5+
  reads it as the whole field, so ``0 4-4 * * *`` would fire every hour.
* Daylight saving time. croniter is only asked for wall-clock (naive local) times; this
  module maps each to UTC itself:

  - A *wildcard* expression (its minute or its hour field starts with ``*``: ``*``,
    ``*/15``; so ``@hourly``, ``*/15 1 * * *``, ``0 */2 * * *``) follows real time: a
    repeated wall time fires in both passes, a skipped wall time does not exist and never
    fires. This is Vixie/Debian cron's rule (its ``MIN_STAR``/``HR_STAR`` flags), and
    cronsim's for 5-field expressions.
  - Any other (*fixed-time*) expression fires once per matching wall time: in a
    repeated hour only in the first pass (the earlier instant); a wall time skipped by
    a spring-forward gap fires once, at the instant the gap ends (the first valid wall
    time after it, e.g. New York 2026-03-08 ``30 2 * * *`` fires at 03:00 EDT =
    07:00 UTC). Fire times are a set: a gap fire that coincides with a real match of
    the same expression (``0 3`` in that example) fires once.
  - 6-field expressions (seconds first) are classified by the same minute and hour
    fields; the seconds field plays no part (``0 30 2 * * *`` is 02:30 daily, once;
    ``*/10 * * * * *`` follows real time). cronsim instead treats every 6-field
    expression as wildcard; see docs/ARCHITECTURE.md, "Cron and daylight saving time".

Day-of-month and day-of-week combine as croniter does by default: when both are
restricted (neither is ``*``), a day matching either one fires.

``every_ms`` schedules fire at ``start_ms + k * every_ms`` (``start_ms`` defaults to 0,
so they are aligned to the epoch) and ignore the time zone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

__all__ = ["MAX_PREVIEW", "InvalidCron", "Schedule", "next_fire", "parse_schedule", "preview"]

MAX_PREVIEW = 1000
"""Largest ``count`` accepted by :func:`preview`."""

_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)
_SECOND = timedelta(seconds=1)
# Each step of the search either returns or jumps past one transition; a handful covers
# back-to-back transitions, so running out means a bug, not a sparse schedule.
_MAX_STEPS = 64

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Parentheses are left out on purpose: they only appear in croniter's hashed ``H(0-5)``.
_ALLOWED_CHARS = re.compile(r"[A-Za-z0-9*,/#?@ \t-]+")
_ONE_RANGE = re.compile(r"([a-z0-9]+)-([a-z0-9]+)(?:/\d+)?")
# ``H`` needs a hash id and ``R`` is random per parse: either would make nodes disagree.
_HASHED = re.compile(r"[hr](?:/\d+)?")
_FIELDS_5 = ("minute", "hour", "day of month", "month", "day of week")
_FIELDS_6 = ("second", *_FIELDS_5)
_MONTH_DAYS = {2: 29, 4: 30, 6: 30, 9: 30, 11: 30}  # the others have 31
_NAMES: dict[str, dict[str, int]] = {
    "month": {
        name: i + 1
        for i, name in enumerate(
            ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
        )
    },
    "day of week": {
        name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
    },
}


class InvalidCron(ValueError):
    """A schedule definition is invalid: bad cron expression, time zone, interval or bounds.

    Raised when a :class:`Schedule` is built (registration), never when it fires.
    """


@dataclass(frozen=True, slots=True)
class _Compiled:
    """What the search needs from a validated expression."""

    expr: str  # normalised, handed to croniter
    seconds: bool  # six fields, seconds first
    wildcard: bool  # minute or hour field starts with `*` (Vixie/Debian)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated schedule definition: exactly one of ``cron`` or ``every_ms``.

    All times are integer epoch milliseconds (UTC). ``start_ms``/``end_ms`` bound the
    fire times, both inclusive. Building one validates it and raises :class:`InvalidCron`;
    ``cron`` is stored with its whitespace collapsed.
    """

    cron: str | None = None
    every_ms: int | None = None
    tz: str = "UTC"
    start_ms: int | None = None
    end_ms: int | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_ms is None):
            raise InvalidCron(
                "a schedule needs exactly one of cron or every_ms, got "
                f"cron={self.cron!r}, every_ms={self.every_ms!r}"
            )
        if self.cron is not None:
            if not isinstance(self.cron, str):
                raise InvalidCron(f"cron must be a string, got {self.cron!r}")
            if not _ALLOWED_CHARS.fullmatch(self.cron):
                raise InvalidCron(
                    f"invalid cron expression {self.cron!r}: empty or unexpected characters"
                )
            object.__setattr__(self, "cron", " ".join(self.cron.split()))
            _compile(self.cron)
        if self.every_ms is not None and (not _is_int(self.every_ms) or self.every_ms < 1):
            raise InvalidCron(
                f"every_ms must be a positive integer (milliseconds), got {self.every_ms!r}"
            )
        _zone(self.tz)
        for name in ("start_ms", "end_ms"):
            value = getattr(self, name)
            if value is not None and not _is_int(value):
                raise InvalidCron(f"{name} must be an integer (epoch ms) or None, got {value!r}")
        if self.start_ms is not None and self.end_ms is not None and self.end_ms < self.start_ms:
            raise InvalidCron(f"end_ms ({self.end_ms}) is before start_ms ({self.start_ms})")

    def to_dict(self) -> dict[str, Any]:
        """The definition as a JSON-able dict; :meth:`from_dict` reads it back."""
        return {
            "cron": self.cron,
            "every_ms": self.every_ms,
            "tz": self.tz,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        """Rebuild (and re-validate) a schedule from :meth:`to_dict` output."""
        unknown = set(data) - {"cron", "every_ms", "tz", "start_ms", "end_ms"}
        if unknown:
            raise InvalidCron(f"unknown schedule field(s): {', '.join(sorted(unknown))}")
        return cls(
            cron=data.get("cron"),
            every_ms=data.get("every_ms"),
            tz=data.get("tz", "UTC"),
            start_ms=data.get("start_ms"),
            end_ms=data.get("end_ms"),
        )

    def definition_hash(self) -> str:
        """A stable fingerprint of the definition, to tell whether a re-registration changed it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def parse_schedule(
    cron: str | None = None,
    every_ms: int | None = None,
    tz: str = "UTC",
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> Schedule:
    """Validate a definition and return its :class:`Schedule`; raises :class:`InvalidCron`."""
    return Schedule(cron=cron, every_ms=every_ms, tz=tz, start_ms=start_ms, end_ms=end_ms)


def next_fire(schedule: Schedule, after_ms: int) -> int | None:
    """The first fire time strictly after ``after_ms``, or None if there is none (past end)."""
    if not _is_int(after_ms):
        raise TypeError(f"after_ms must be an int (epoch ms), got {after_ms!r}")
    lower = after_ms
    if schedule.start_ms is not None:
        lower = max(lower, schedule.start_ms - 1)
    if schedule.end_ms is not None and lower >= schedule.end_ms:
        return None
    if schedule.every_ms is not None:
        anchor = schedule.start_ms if schedule.start_ms is not None else 0
        fire: int | None = anchor + ((lower - anchor) // schedule.every_ms + 1) * schedule.every_ms
    else:
        assert schedule.cron is not None  # guaranteed by Schedule.__post_init__
        try:
            fire = _next_cron(_compile(schedule.cron), _zone(schedule.tz), lower)
        except (CroniterBadDateError, OverflowError):
            # No match within croniter's horizon, or beyond datetime's year 9999.
            fire = None
    if fire is None or (schedule.end_ms is not None and fire > schedule.end_ms):
        return None
    return fire


def preview(schedule: Schedule, after_ms: int, count: int) -> list[int]:
    """The next ``count`` (0..MAX_PREVIEW) fire times after ``after_ms``; fewer past the end."""
    if not _is_int(count) or not 0 <= count <= MAX_PREVIEW:
        raise ValueError(f"count must be an integer between 0 and {MAX_PREVIEW}, got {count!r}")
    fires: list[int] = []
    cursor = after_ms
    while len(fires) < count:
        fire = next_fire(schedule, cursor)
        if fire is None:
            break
        fires.append(fire)
        cursor = fire
    return fires


def _is_int(value: object) -> bool:
    # bool is an int subclass, and True milliseconds is never what a caller meant.
    return isinstance(value, int) and not isinstance(value, bool)


def _zone(name: str) -> tzinfo:
    if not isinstance(name, str) or not name or name == "localtime":
        # "localtime" resolves to each machine's own zone: nodes would disagree.
        raise InvalidCron(f"invalid time zone {name!r}")
    return _load_zone(name)


@lru_cache(maxsize=256)
def _load_zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidCron(f"unknown time zone {name!r}") from exc


@lru_cache(maxsize=1024)
def _compile(cron: str) -> _Compiled:
    # Schedule.__post_init__ has checked the characters and collapsed the whitespace.
    text = _ALIASES.get(cron.lower(), cron)
    fields = text.lower().split()
    names: tuple[str, ...]
    if len(fields) == 5:
        names = _FIELDS_5
    elif len(fields) == 6:
        names = _FIELDS_6
    else:
        raise InvalidCron(
            f"invalid cron expression {cron!r}: expected 5 fields (min hour dom month dow) "
            f"or 6 (sec min hour dom month dow), got {len(fields)}"
        )
    normalised = []
    for field, name in zip(fields, names, strict=True):
        items = []
        for item in field.split(","):
            if _HASHED.fullmatch(item):
                raise InvalidCron(
                    f"invalid cron expression {cron!r}: hashed/random values (H, R) "
                    "are not supported"
                )
            items.append(_one_value_range(item, name))
        normalised.append(",".join(items))
    expr = " ".join(normalised)
    seconds = len(fields) == 6
    try:
        expanded, _ = croniter.expand(expr, second_at_beginning=seconds)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidCron(f"invalid cron expression {cron!r}: {exc}") from exc
    # croniter's own strict=True check ignores day of week, so it would also reject
    # "0 0 31 2 MON" (Mondays in February, as the two day fields are OR-ed).
    days, months, weekdays = expanded[2], expanded[3], expanded[4]
    if weekdays == ["*"] and _days_never_occur(days, months):
        raise InvalidCron(
            f"invalid cron expression {cron!r}: day(s) of month {days} never occur "
            f"in month(s) {months}"
        )
    minute, hour = normalised[1:3] if seconds else normalised[0:2]
    return _Compiled(
        expr=expr, seconds=seconds, wildcard=minute.startswith("*") or hour.startswith("*")
    )


def _days_never_occur(days: list[int | str], months: list[int | str]) -> bool:
    """Whether no listed day of month exists in any listed month ("0 0 31 2 *")."""
    if "*" in days or "l" in days or "*" in months:
        return False
    longest = max(_MONTH_DAYS.get(int(month), 31) for month in months)
    return min(int(day) for day in days) > longest


def _one_value_range(item: str, field: str) -> str:
    """``N-N`` and ``N-N/s`` -> ``N`` (croniter 5+ reads ``N-N`` as the whole field)."""
    match = _ONE_RANGE.fullmatch(item)
    if match is None:
        return item
    low, high = (_field_value(part, field) for part in match.group(1, 2))
    # Raw values on purpose: "0-7" in day of week is a real range (every day), "7-7" is not.
    if low is None or low != high:
        return item
    return match.group(1)


def _field_value(token: str, field: str) -> int | None:
    if token.isdigit():
        return int(token)
    return _NAMES.get(field, {}).get(token)


def _to_ms(naive_utc: datetime) -> int:
    return (naive_utc - _EPOCH_NAIVE) // _MS


def _utc_naive(ms: int) -> datetime:
    return _EPOCH_NAIVE + ms * _MS


def _offsets(wall: datetime, zone: tzinfo) -> tuple[timedelta, timedelta]:
    """UTC offsets of a naive wall time read with fold=0 and fold=1 (PEP 495).

    Equal: the wall time occurs once. fold=0 larger: it is repeated (fall back) and
    fold=0 is the first pass. fold=0 smaller: it is skipped (spring forward), fold=0
    being the offset before the gap.
    """
    first = wall.replace(tzinfo=zone).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert first is not None and second is not None  # ZoneInfo always answers
    return first, second


def _transition(zone: tzinfo, before_ms: int, after_ms: int) -> int:
    """The instant (ms) in (before_ms, after_ms] where the UTC offset changes.

    Bisects on whole seconds: tz database transitions fall on whole seconds.
    """
    lo = before_ms // 1000
    hi = -(-after_ms // 1000)
    start = _offset_at(zone, lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(zone, mid) == start:
            lo = mid
        else:
            hi = mid
    return hi * 1000


def _offset_at(zone: tzinfo, epoch_s: int) -> timedelta | None:
    return (_EPOCH_UTC + timedelta(seconds=epoch_s)).astimezone(zone).utcoffset()


def _next_cron(compiled: _Compiled, zone: tzinfo, after_ms: int) -> int:
    """First fire strictly after ``after_ms``; see the module docstring for the DST rules."""
    local = (_EPOCH_UTC + after_ms * _MS).astimezone(zone)
    wall = local.replace(tzinfo=None)
    it = croniter(compiled.expr, wall, ret_type=datetime, second_at_beginning=compiled.seconds)

    def next_wall(cursor: datetime) -> datetime:
        """First matching wall time strictly after ``cursor``."""
        found: datetime = it.get_next(ret_type=datetime, start_time=cursor)
        return found

    cursor = wall
    if compiled.wildcard and local.fold == 0:
        first, second = _offsets(wall, zone)
        if first > second:
            # after_ms lies in the first pass of a repeated hour. Second-pass fires of
            # wall times already passed come after the rest of the first pass, so the
            # fold is searched pass by pass, then the search resumes after it.
            change = _transition(zone, after_ms, _to_ms(wall - second))
            fold_start = _utc_naive(change) + second
            fold_end = _utc_naive(change) + first
            found = next_wall(wall)
            if found < fold_end:
                return _to_ms(found - first)
            found = next_wall(fold_start - _SECOND)
            if found < fold_end:
                return _to_ms(found - second)
            cursor = fold_end - _SECOND

    for _ in range(_MAX_STEPS):
        found = next_wall(cursor)
        first, second = _offsets(found, zone)
        first_ms, second_ms = _to_ms(found - first), _to_ms(found - second)
        if first == second:
            if first_ms > after_ms:
                return first_ms
            cursor = found
        elif first_ms < second_ms:  # repeated wall time
            if first_ms > after_ms:
                return first_ms
            if compiled.wildcard:
                if second_ms > after_ms:
                    return second_ms
                cursor = found
            else:
                # Second pass of a fixed-hour expression: skip the rest of the fold.
                change = _transition(zone, first_ms, second_ms)
                cursor = _utc_naive(change) + first - _SECOND
        else:  # skipped wall time
            change = _transition(zone, second_ms, first_ms)
            if not compiled.wildcard and change > after_ms:
                return change
            cursor = _utc_naive(change) + second - _SECOND
    raise RuntimeError(f"no progress finding the next fire of {compiled.expr!r} in {zone}")

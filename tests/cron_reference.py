"""A brute-force cron oracle for the tests, independent of croniter and of engine.cron.

It walks UTC instants one minute at a time, reads the wall clock of each with zoneinfo,
and applies the documented policy from first principles:

* wildcard (minute or hour field starts with ``*``): fire whenever the wall clock shows a
  matching time, so a repeated wall time fires twice and a skipped one never;
* fixed time (neither): fire only the first time the clock shows a matching wall time (a wall time
  is "already shown" when it is not later than the latest one shown so far), and when the
  clock jumps forward over a matching wall time, fire at the instant it lands.

Seconds (6 fields, seconds first) are expanded inside each UTC minute. That is exact as
long as UTC offsets are whole minutes, which holds for the tz database since the 1970s;
``fires`` asserts it instead of assuming it.

Supported syntax is the subset the tests generate: ``*``, ``*/n``, ``a``, ``a-b``,
``a-b/n``, lists, month and weekday names. ``a-a`` is ``a`` (classic cron). Day of month
and day of week are OR-ed when neither field is ``*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MINUTE_MS = 60_000


def _value(token: str, kind: str) -> int:
    if kind == "month" and token in MONTHS:
        return MONTHS.index(token) + 1
    if kind == "dow" and token in WEEKDAYS:
        return WEEKDAYS.index(token)
    return int(token)


def parse_field(text: str, kind: str) -> frozenset[int]:
    """The set of values a field matches (day of week: 0..6, Sunday 0 and 7)."""
    low_bound, high_bound = {
        "sec": (0, 59),
        "min": (0, 59),
        "hour": (0, 23),
        "dom": (1, 31),
        "month": (1, 12),
        "dow": (0, 6),
    }[kind]
    values: set[int] = set()
    for item in text.lower().split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            low, high = low_bound, high_bound
        elif "-" in base:
            first, last = base.split("-")
            low, high = _value(first, kind), _value(last, kind)
        else:
            low = high = _value(base, kind)
        if low > high:
            raise ValueError(f"wrapping range {item!r} is not supported by the reference")
        values.update(range(low, high + 1, step))
    if kind == "dow" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


@dataclass(frozen=True)
class Expr:
    """A parsed expression; ``seconds`` holds {0} for 5-field expressions."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]
    dom_star: bool
    dow_star: bool
    wildcard: bool

    @classmethod
    def parse(cls, text: str) -> Expr:
        """Parse 5 fields, or 6 with the seconds first."""
        fields = text.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) != 6:
            raise ValueError(text)
        sec, minute, hour, dom, month, dow = fields
        return cls(
            seconds=parse_field(sec, "sec"),
            minutes=parse_field(minute, "min"),
            hours=parse_field(hour, "hour"),
            doms=parse_field(dom, "dom"),
            months=parse_field(month, "month"),
            dows=parse_field(dow, "dow"),
            dom_star=dom == "*",
            dow_star=dow == "*",
            wildcard=minute.startswith("*") or hour.startswith("*"),
        )

    def matches_minute(self, wall: datetime) -> bool:
        """Whether every field but the seconds matches this wall-clock minute."""
        if (
            wall.minute not in self.minutes
            or wall.hour not in self.hours
            or wall.month not in self.months
        ):
            return False
        dom_ok = wall.day in self.doms
        dow_ok = wall.isoweekday() % 7 in self.dows
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok


def _wall(ms: int, zone: ZoneInfo) -> datetime:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).astimezone(zone)


def fires(
    expr: str, tz: str, after_ms: int, until_ms: int, lookback_ms: int = 3 * 3600_000
) -> list[int]:
    """All fire times in (after_ms, until_ms], epoch ms.

    The walk starts ``lookback_ms`` early so that the first pass of a repeated hour that
    overlaps the window has been seen (the longest DST shift in use is 2 hours).
    """
    spec = Expr.parse(expr)
    zone = ZoneInfo(tz)
    out: list[int] = []
    latest: datetime | None = None  # latest wall time shown so far
    previous: datetime | None = None  # wall time one UTC minute ago
    t = (after_ms - lookback_ms) // MINUTE_MS * MINUTE_MS
    one_minute = timedelta(minutes=1)
    while t <= until_ms:
        wall = _wall(t, zone).replace(tzinfo=None)
        assert wall.second == 0 and wall.microsecond == 0, f"{tz} offset is not whole minutes"
        matched = spec.matches_minute(wall)
        if spec.wildcard:
            seconds = spec.seconds if matched else frozenset()
        else:
            new = latest is None or wall > latest
            seconds = spec.seconds if matched and new else frozenset()
            if previous is not None and wall - previous > one_minute:
                skipped = previous + one_minute
                while skipped < wall:
                    if spec.matches_minute(skipped):
                        # Every second of the skipped minute is gone; the clock lands at
                        # the start of this UTC minute, so that is where it fires.
                        seconds = seconds | {0}
                        break
                    skipped += one_minute
        for second in sorted(seconds):
            instant = t + second * 1000
            if after_ms < instant <= until_ms:
                out.append(instant)
        latest = wall if latest is None else max(latest, wall)
        previous = wall
        t += MINUTE_MS
    return out


@lru_cache(maxsize=64)
def transitions(tz: str, start_year: int, end_year: int) -> tuple[int, ...]:
    """Instants (epoch ms) in [start_year, end_year) where the UTC offset of ``tz`` changes."""
    zone = ZoneInfo(tz)
    hour = 3600_000
    t = int(datetime(start_year, 1, 1, tzinfo=UTC).timestamp() * 1000)
    end = int(datetime(end_year, 1, 1, tzinfo=UTC).timestamp() * 1000)
    found: list[int] = []
    offset = _wall(t, zone).utcoffset()
    while t < end:
        nxt = t + hour
        if _wall(nxt, zone).utcoffset() != offset:
            low, high = t, nxt  # offset at low is the old one, at high the new one
            while high - low > 1000:
                mid = (low + high) // 2 // 1000 * 1000
                if mid == low:
                    break
                if _wall(mid, zone).utcoffset() == offset:
                    low = mid
                else:
                    high = mid
            found.append(high)
            offset = _wall(nxt, zone).utcoffset()
        t = nxt
    return tuple(found)

"""The body of ``PUT /api/schedules/{name}``: its JSON Schema (published in the OpenAPI
document and checked by the handler, see :mod:`.schema_check`) and its definition.

The fields are those of a ``[schedules.<name>]`` table of engine.toml, minus what only a
config can say (``processor``, ``concurrency``, ``enabled``): ``queue``, ``cron`` or
``every_ms``, ``timezone``, ``start`` / ``end`` (epoch ms), ``limit``, ``misfire``,
``misfire_grace_ms``, ``overlap``, ``job_name``, ``data`` and ``job`` (the job options).

The schema states every rule a JSON Schema can: lengths, ranges, enums (the time zones are
this host's tzdata), the cron alphabet and field count, one of cron / every_ms. What it
cannot state is checked after it, each error naming its field: a cron expression the
parser refuses (``61 * * * *``), ``end`` before ``start``.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson

from ..cron import Schedule, parse_schedule
from ..options import MAX_ATTEMPTS, MAX_DELAY_MS, MAX_PRIORITY, MAX_TIMEOUT_MS, JobOptions
from ..scheduler import (
    DEFAULT_MISFIRE_GRACE_MS,
    MIN_MISFIRE_GRACE_MS,
    MISFIRE_POLICIES,
    OVERLAP_POLICIES,
    ScheduleDefinition,
    define_schedule,
)
from ..scheduler.definition import MAX_LIMIT
from .errors import ApiError
from .schema_check import check

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
# 5 or 6 fields (seconds first) of cron's alphabet, or an alias such as @daily.
_CRON_FIELD = r"[A-Za-z0-9*,/#?\-]+"
CRON_PATTERN = (
    r"^[ \t]*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    rf"|{_CRON_FIELD}([ \t]+{_CRON_FIELD}){{4,5}})[ \t]*$"
)
MAX_CRON_LEN = 200
# The finest a cron expression can fire is once a second; an interval over HTTP is held
# to the same (the Python API accepts less, for tests).
MIN_EVERY_MS = 1000
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
# "localtime" is each machine's own zone: instances would disagree (engine.cron refuses it).
ZONES = sorted(zoneinfo.available_timezones() - {"localtime"})

_MS_RANGE = {"type": "integer", "minimum": 0, "maximum": MAX_DELAY_MS}
_RETENTION = {
    "type": ["boolean", "integer", "object"],
    "description": "true (remove at once), false (keep all), a count to keep, or {count, age}",
    "minimum": 0,
    "maximum": 10**9,
    "properties": {
        "count": {"type": "integer", "minimum": 0, "maximum": 10**9},
        "age": {"type": "integer", "minimum": 0, "maximum": 10 * 365 * 86400},
    },
    "additionalProperties": False,
}
JOB_OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "options of each job the schedule enqueues (Bull's names)",
    "properties": {
        "attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS},
        "backoff": {
            "type": ["integer", "object"],
            "description": "ms between attempts, or {type, delay, jitter}",
            "minimum": 0,
            "maximum": MAX_DELAY_MS,
            "properties": {
                "type": {"enum": ["fixed", "exponential", "custom"]},
                "delay": _MS_RANGE,
                "jitter": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "additionalProperties": False,
        },
        "priority": {"type": "integer", "minimum": 0, "maximum": MAX_PRIORITY},
        "timeout": {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT_MS},
        "removeOnComplete": _RETENTION,
        "removeOnFail": _RETENTION,
    },
    "additionalProperties": False,
}
SCHEDULE_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "queue": {"type": "string", "pattern": NAME_PATTERN, "description": "a served queue"},
        "cron": {
            "type": "string",
            "maxLength": MAX_CRON_LEN,
            "pattern": CRON_PATTERN,
            "description": "5 fields, or 6 with the seconds first; names and @aliases",
        },
        "every_ms": {"type": "integer", "minimum": MIN_EVERY_MS, "maximum": MAX_DELAY_MS},
        "timezone": {"enum": ZONES, "default": "UTC", "description": "IANA zone of cron",
                     "x-error": "unknown time zone {value!r:.80} (an IANA name: Europe/Madrid)"},
        "start": {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS,
                  "description": "no fire before this (epoch ms)"},
        "end": {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS,
                "description": "no fire after this (epoch ms); not before start"},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                  "description": "end after this many fires in all (Bull's repeat.limit)"},
        "misfire": {"enum": list(MISFIRE_POLICIES), "default": "once"},
        "misfire_grace_ms": {"type": "integer", "minimum": MIN_MISFIRE_GRACE_MS,
                             "maximum": MAX_DELAY_MS, "default": DEFAULT_MISFIRE_GRACE_MS},
        "overlap": {"enum": list(OVERLAP_POLICIES), "default": "allow"},
        "job_name": {"type": "string", "maxLength": 200, "description": "default: the name"},
        "data": {"description": "the job's data (any JSON)"},
        "job": JOB_OPTIONS_SCHEMA,
    },
    "required": ["queue"],
    "oneOf": [{"required": ["cron"]}, {"required": ["every_ms"]}],
    "additionalProperties": False,
    "example": {
        "queue": "serpram-sync",
        "cron": "30 6 * * 1-5",
        "timezone": "Europe/Madrid",
        "overlap": "skip",
        "data": {"report": "daily"},
        "job": {"attempts": 3, "backoff": {"type": "exponential", "delay": 5000}},
    },
}  # fmt: skip
FIELDS = frozenset(SCHEDULE_BODY["properties"])
T = TypeVar("T")


def _named(field: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except ValueError as exc:  # InvalidCron is one
        raise ApiError(400, str(exc), field=field) from None


def definition_of(name: str, body: Mapping[str, Any]) -> ScheduleDefinition:
    """Check ``body`` against :data:`SCHEDULE_BODY`, then what the schema cannot say;
    :class:`ApiError` 400 naming the field."""
    b = check(SCHEDULE_BODY, body)
    kind = "cron" if "cron" in b else "every_ms"
    tz = b.get("timezone", "UTC")
    _named(kind, lambda: parse_schedule(cron=b.get("cron"), every_ms=b.get("every_ms"), tz=tz))
    _named("end", lambda: parse_schedule(
        cron=b.get("cron"), every_ms=b.get("every_ms"), tz=tz, start_ms=b.get("start"),
        end_ms=b.get("end"),
    ))  # fmt: skip
    options = _named("job", lambda: JobOptions.parse(b.get("job")))
    _named("data", lambda: orjson.dumps(b.get("data")))  # nested past orjson's depth
    return _named("body", lambda: define_schedule(
        name, b["queue"], cron=b.get("cron"), every_ms=b.get("every_ms"), tz=tz,
        start_ms=b.get("start"), end_ms=b.get("end"), data=b.get("data"), opts=options,
        misfire=b.get("misfire", "once"),
        misfire_grace_ms=b.get("misfire_grace_ms", DEFAULT_MISFIRE_GRACE_MS),
        overlap=b.get("overlap", "allow"), job_name=b.get("job_name", ""), limit=b.get("limit"),
    ))  # fmt: skip


def body_of(definition: ScheduleDefinition) -> dict[str, Any]:
    """The ``PUT`` body that defines ``definition`` (what the dashboard's form edits)."""
    s: Schedule = definition.schedule
    out: dict[str, Any] = {"queue": definition.queue}
    if s.cron is not None:
        out["cron"] = s.cron
    else:
        out["every_ms"] = s.every_ms
    out["timezone"] = s.tz
    for key, value in (("start", s.start_ms), ("end", s.end_ms), ("limit", definition.limit)):
        if value is not None:
            out[key] = value
    out.update(
        misfire=definition.misfire,
        misfire_grace_ms=definition.misfire_grace_ms,
        overlap=definition.overlap,
        job_name=definition.job_name,
        data=definition.data,
        job=definition.options.to_json(),
    )
    return out

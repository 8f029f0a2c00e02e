"""The TOML config: lease timing and declared schedules, validated once at load.

The file is ``$ENGINE_CONFIG`` if set, else ``engine.toml`` in the working directory (the
repository ships one). Shape::

    [engine]
    prefix = "engine"                 # optional key prefix

    [lease]                           # optional; the scheduler leader lease
    ttl_ms = 10000
    renew_interval_ms = 3000          # at most ttl_ms / 3
    margin_ms = 1000                  # stop acting this long before the lease expires

    [schedules.serpram]               # the table name is the schedule name
    queue = "serpram-sync"
    cron = "*/5 * * * *"              # or every_ms = 60000
    timezone = "UTC"                  # IANA zone
    processor = "engine.processors:serpram_sync"   # package.module:function
    concurrency = 1                   # worker slots for the processor
    misfire = "once"                  # skip | once | all
    misfire_grace_ms = 60000
    overlap = "skip"                  # allow | skip
    start = 2025-11-17T00:00:00Z      # optional, TOML datetime or epoch ms
    end = 2030-01-01T00:00:00Z        # optional
    enabled = true
    limit = 100                       # optional: end after this many fires in all
    data = { source = "serpram" }     # optional job data
    [schedules.serpram.job]           # job options (snake_case or the seed's camelCase)
    attempts = 3
    backoff = { type = "exponential", delay = 5000 }
    remove_on_complete = 50
    remove_on_fail = 100

Every error is a ``ValueError`` naming the schedule and the field.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from .alerts import AlertConfig
from .keys import validate_prefix
from .lock import LeaseConfig
from .scheduler import DEFAULT_MISFIRE_GRACE_MS, ScheduleDefinition, define_schedule

DEFAULT_CONFIG_FILE = "engine.toml"
CONFIG_ENV = "ENGINE_CONFIG"

_TOP = {"engine", "lease", "schedules", "alerts"}
_ENGINE = {"prefix"}
_LEASE = {"ttl_ms", "renew_interval_ms", "margin_ms"}
_SCHEDULE = {
    "queue",
    "cron",
    "every_ms",
    "timezone",
    "processor",
    "concurrency",
    "misfire",
    "misfire_grace_ms",
    "overlap",
    "start",
    "end",
    "enabled",
    "data",
    "job",
    "job_name",
    "limit",
}


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """A declared schedule: its definition plus how this instance processes its jobs."""

    definition: ScheduleDefinition
    processor: str | None = None
    concurrency: int = 1
    enabled: bool = True

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def queue(self) -> str:
        return self.definition.queue

    def load_processor(self) -> Callable[..., Any] | None:
        """The processor function (validated at config load, so this does not fail)."""
        return None if self.processor is None else import_processor(self.processor)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    prefix: str | None = None
    lease: LeaseConfig = field(default_factory=LeaseConfig)
    schedules: Mapping[str, ScheduleConfig] = field(default_factory=dict)
    alerts: AlertConfig = field(default_factory=AlertConfig)  # [alerts], see engine.alerts


def import_processor(path: str) -> Callable[..., Any]:
    """Resolve ``package.module:function``; ``ValueError`` if it is not importable/callable."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ValueError(f"must be 'package.module:function', got {path!r}")
    module_name, attr = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{path!r} is not a callable in {module_name!r}")
    return fn  # type: ignore[no-any-return]


def _time_ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"must be a datetime or epoch ms, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    if isinstance(value, str):
        try:
            return _time_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            pass
    raise ValueError(f"must be a datetime or epoch ms, got {value!r}")


def _unknown(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")


def _table(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a table")
    return value


def parse_schedule_config(name: str, raw: Mapping[str, Any]) -> ScheduleConfig:
    """Validate one ``[schedules.<name>]`` table."""
    where = f"schedule {name!r}"
    raw = _table(where, raw)
    _unknown(where, raw, _SCHEDULE)
    if "queue" not in raw:
        raise ValueError(f"{where}: field 'queue' is required")
    current = "definition"
    try:
        current = "start"
        start_ms = _time_ms(raw.get("start"))
        current = "end"
        end_ms = _time_ms(raw.get("end"))
        current = "job"
        job = dict(_table("job", raw.get("job", {})))
        current = "definition"
        definition = define_schedule(
            name,
            raw["queue"],
            cron=raw.get("cron"),
            every_ms=raw.get("every_ms"),
            tz=raw.get("timezone", "UTC"),
            start_ms=start_ms,
            end_ms=end_ms,
            data=raw.get("data"),
            opts=job,
            misfire=raw.get("misfire", "once"),
            misfire_grace_ms=raw.get("misfire_grace_ms", DEFAULT_MISFIRE_GRACE_MS),
            overlap=raw.get("overlap", "allow"),
            job_name=raw.get("job_name", ""),
            limit=raw.get("limit"),
        )
    except ValueError as exc:
        field_hint = "" if current == "definition" else f" field {current!r}:"
        raise ValueError(f"{where}:{field_hint} {exc}") from None
    processor = raw.get("processor")
    if processor is not None:
        try:
            import_processor(processor)
        except ValueError as exc:
            raise ValueError(f"{where}: field 'processor' {exc}") from None
    concurrency = raw.get("concurrency", 1)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"{where}: field 'concurrency' must be a positive integer")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"{where}: field 'enabled' must be true or false")
    return ScheduleConfig(definition, processor, concurrency, enabled)


def parse_config(raw: Mapping[str, Any]) -> EngineConfig:
    """Validate a parsed TOML document."""
    _unknown("config", raw, _TOP)
    engine = _table("[engine]", raw.get("engine", {}))
    _unknown("[engine]", engine, _ENGINE)
    prefix = engine.get("prefix")
    if prefix is not None:
        try:
            validate_prefix(prefix)
        except ValueError as exc:
            raise ValueError(f"[engine] field 'prefix': {exc}") from None
    lease_raw = _table("[lease]", raw.get("lease", {}))
    _unknown("[lease]", lease_raw, _LEASE)
    try:
        lease = LeaseConfig(**lease_raw)
    except ValueError as exc:
        raise ValueError(f"[lease]: {exc}") from None
    schedules = {
        name: parse_schedule_config(name, table)
        for name, table in _table("[schedules]", raw.get("schedules", {})).items()
    }
    alerts = AlertConfig.from_table(_table("[alerts]", raw.get("alerts", {})))
    return EngineConfig(prefix=prefix, lease=lease, schedules=schedules, alerts=alerts)


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> EngineConfig:
    """Read and validate the config file (``path``, ``$ENGINE_CONFIG`` or ``engine.toml``).

    A missing default ``engine.toml`` gives an empty config; a missing explicit file or
    ``$ENGINE_CONFIG`` is an error.
    """
    explicit = path is not None or bool((os.environ if env is None else env).get(CONFIG_ENV))
    file = Path(path) if path is not None else config_path(env)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ValueError(f"config file {str(file)!r} not found") from None
        return EngineConfig()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {str(file)!r} is not valid TOML: {exc}") from None
    return parse_config(raw)


__all__ = [
    "CONFIG_ENV",
    "EngineConfig",
    "ScheduleConfig",
    "import_processor",
    "load_config",
    "parse_config",
    "parse_schedule_config",
]

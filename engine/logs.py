"""The service's log output: text or JSON lines, repeated lines folded, no tracebacks.

``configure_logging`` installs one handler on the root logger, so every ``engine.*``
logger (and aiohttp's, and a processor's) goes through it without code changes:

- ``ENGINE_LOG_FORMAT=text`` (default) or ``json``: one JSON object per line with ``ts``,
  ``level``, ``logger``, ``message`` and, when the call site passes them with
  ``extra=job_fields(...)``, ``jobId``, ``queue`` and ``schedule``, for log stacks that
  index fields (Loki, ELK, Cloud Logging).
- Repeated lines: the same message from the same logger at the same level within
  ``ENGINE_LOG_REPEAT_WINDOW_S`` (10 s; 0 = off) is written once; once the window has
  passed, the next line written (or the handler's close at exit) is preceded by one line
  ``<message> (repeated N more times within 10s)``. An outage that fails a lease renewal
  30 times a second, or a client sending malformed requests in a loop, writes a few
  lines, not thousands. Memory is bounded (``MAX_TRACKED`` distinct lines).
- Tracebacks are dropped (they can carry job data, URLs or tokens), the exception's type
  is kept; ``ENGINE_LOG_LEVEL=DEBUG`` keeps them.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import orjson

FORMATS = ("text", "json")
DEFAULT_REPEAT_WINDOW_S = 10.0
MAX_TRACKED = 1000
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# LogRecord attributes that carry the fields of a JSON line, and their JSON names.
FIELDS = {"job_id": "jobId", "queue": "queue", "schedule": "schedule"}


def job_fields(
    job_id: str | None = None, queue: str | None = None, schedule: str | None = None
) -> dict[str, str]:
    """``extra=`` for a log call about a job, queue or schedule (the JSON line's fields)."""
    given = {"job_id": job_id, "queue": queue, "schedule": schedule}
    return {k: v for k, v in given.items() if v is not None}


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "INFO"
    format: str = "text"
    repeat_window_s: float = DEFAULT_REPEAT_WINDOW_S

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"ENGINE_LOG_FORMAT must be one of {', '.join(FORMATS)}")
        if logging.getLevelName(self.level) not in (10, 20, 30, 40, 50):
            raise ValueError("ENGINE_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        if not 0 <= self.repeat_window_s <= 3600:
            raise ValueError("ENGINE_LOG_REPEAT_WINDOW_S must be between 0 and 3600")

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        level: str | None = None,
        log_format: str | None = None,
    ) -> LogSettings:
        """``ENGINE_LOG_LEVEL``, ``ENGINE_LOG_FORMAT`` and ``ENGINE_LOG_REPEAT_WINDOW_S``;
        ``level`` and ``log_format`` (the command-line flags) win."""
        env = os.environ if env is None else env
        raw_window = env.get("ENGINE_LOG_REPEAT_WINDOW_S") or str(DEFAULT_REPEAT_WINDOW_S)
        try:
            window = float(raw_window)
        except ValueError:
            raise ValueError(
                f"ENGINE_LOG_REPEAT_WINDOW_S must be a number, got {raw_window!r}"
            ) from None
        return cls(
            level=(level or env.get("ENGINE_LOG_LEVEL") or "INFO").upper(),
            format=(log_format or env.get("ENGINE_LOG_FORMAT") or "text").lower(),
            repeat_window_s=window,
        )


class RepeatFolder:
    """Which records to write: the first of a run of identical lines per window, and how
    many were folded into it. Keys are (logger, level, message); at most ``max_tracked``
    are remembered (the oldest is forgotten, its count reported)."""

    def __init__(
        self,
        window_s: float,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.max_tracked = max_tracked
        self.clock = clock
        # key -> [window start, folded count, a record to summarise with]
        self._runs: OrderedDict[tuple[str, int, str], list[Any]] = OrderedDict()

    def admit(self, record: logging.LogRecord) -> bool:
        """Write this record? False for a copy within the window of an identical line."""
        if self.window_s <= 0:
            return True
        key = (record.name, record.levelno, record.getMessage())
        run = self._runs.get(key)
        if run is not None and self.clock() - run[0] < self.window_s:
            run[1] += 1
            run[2] = record
            return False
        self._runs[key] = [self.clock(), 0, record]
        self._runs.move_to_end(key)
        return True

    def due(self, *, everything: bool = False) -> list[tuple[logging.LogRecord, int]]:
        """Runs whose window has closed with lines folded (all of them when
        ``everything``), and runs forgotten past ``max_tracked``: (last record, count)."""
        now = self.clock()
        out: list[tuple[logging.LogRecord, int]] = []
        for key in list(self._runs):
            start, folded, record = self._runs[key]
            if everything or now - start >= self.window_s:
                del self._runs[key]
                if folded:
                    out.append((record, folded))
        while len(self._runs) > self.max_tracked:
            _, (_, folded, record) = self._runs.popitem(last=False)
            if folded:
                out.append((record, folded))
        return out


def _without_traceback(record: logging.LogRecord) -> None:
    if record.exc_info and record.exc_info[1] is not None:
        name = type(record.exc_info[1]).__name__
        record.msg = f"{record.getMessage()} ({name})"
        record.args = ()
        record.exc_info = None
        record.exc_text = None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for attr, name in FIELDS.items():
            value = getattr(record, attr, None)
            if value is not None:
                line[name] = value
        repeated = getattr(record, "repeated", None)
        if repeated:
            line["repeated"] = repeated
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def _folded_copy(record: logging.LogRecord, count: int, window_s: float) -> logging.LogRecord:
    copy = logging.makeLogRecord(record.__dict__)
    copy.msg = f"{record.getMessage()} (repeated {count} more times within {window_s:g}s)"
    copy.args = ()
    copy.exc_info = None
    copy.exc_text = None
    copy.created = time.time()
    copy.repeated = count
    return copy


class EngineLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that folds repeated lines and drops tracebacks (unless DEBUG)."""

    def __init__(
        self,
        settings: LogSettings,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(stream or sys.stderr)
        self.settings = settings
        self.folder = RepeatFolder(settings.repeat_window_s, clock=clock)
        self.keep_tracebacks = settings.level == "DEBUG"
        self.setFormatter(
            JsonFormatter() if settings.format == "json" else logging.Formatter(TEXT_FORMAT)
        )

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        if not self.keep_tracebacks:
            _without_traceback(record)
        for earlier, count in self.folder.due():
            super().handle(_folded_copy(earlier, count, self.settings.repeat_window_s))
        if not self.folder.admit(record):
            return False
        return bool(super().handle(record))

    def close(self) -> None:
        # The counts of runs still open are not lost at exit.
        for earlier, count in self.folder.due(everything=True):
            super().handle(_folded_copy(earlier, count, self.settings.repeat_window_s))
        super().close()


def configure_logging(settings: LogSettings | None = None) -> EngineLogHandler:
    """Install the engine's handler on the root logger (replacing earlier ones)."""
    settings = settings or LogSettings.from_env()
    handler = EngineLogHandler(settings)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)
    return handler


__all__ = [
    "EngineLogHandler",
    "JsonFormatter",
    "LogSettings",
    "RepeatFolder",
    "configure_logging",
    "job_fields",
]

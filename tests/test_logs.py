"""The service's logs: repeated lines folded with a count, JSON lines with job fields,
no tracebacks; in-process with a fake clock, and end to end through `python -m engine run`."""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from test_service import _env, engine_process

from engine.logs import EngineLogHandler, LogSettings, RepeatFolder, job_fields
from tests.helpers import wait_for
from tests.redis_servers import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(
    msg: str, *args: object, name: str = "engine.lock", **extra: object
) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def _handler(fmt: str = "text", level: str = "INFO") -> tuple[EngineLogHandler, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    settings = LogSettings(level=level, format=fmt, repeat_window_s=10)
    return EngineLogHandler(settings, stream=out, clock=clock), out, clock


def test_an_outage_flood_is_folded_into_one_line_with_a_count() -> None:
    handler, out, clock = _handler()
    for i in range(270):  # 270 identical warnings in 8 s
        clock.now += 8 / 270
        handler.handle(_record("Leader lease acquire for queue %s failed: %s", "q", "timeout"))
        if i % 3 == 0:  # another queue's line interleaved
            handler.handle(_record("Leader lease acquire for queue %s failed: %s", "r", "timeout"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # one per distinct message
    clock.now += 10
    handler.handle(_record("Redis is back", name="engine.service"))
    lines = out.getvalue().splitlines()
    assert "queue q failed: timeout (repeated 269 more times within 10s)" in lines[2]
    assert "queue r failed: timeout (repeated 89 more times within 10s)" in lines[3]
    assert lines[4].endswith("Redis is back")


def test_counts_still_open_are_written_at_close() -> None:
    handler, out, _ = _handler()
    for _ in range(5):
        handler.handle(_record("Malformed HTTP request from %s (%s)", "10.0.0.1", "LineTooLong"))
    handler.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "(repeated 4 more times within 10s)" in lines[1]


def test_different_loggers_or_levels_are_not_folded_together() -> None:
    handler, out, _ = _handler()
    handler.handle(_record("same", name="engine.a"))
    handler.handle(_record("same", name="engine.b"))
    error = _record("same", name="engine.a")
    error.levelno, error.levelname = logging.ERROR, "ERROR"
    handler.handle(error)
    assert len(out.getvalue().splitlines()) == 3


def test_the_folder_remembers_a_bounded_number_of_lines() -> None:
    clock = Clock()
    folder = RepeatFolder(10, max_tracked=100, clock=clock)
    for i in range(10_000):  # distinct messages (a hostile client varying its input)
        assert folder.admit(_record("line %d", i))
        folder.due()
    assert len(folder._runs) <= 100


def test_json_lines_carry_job_queue_and_schedule_fields() -> None:
    handler, out, _ = _handler("json")
    record = _record("Job %s active", "7", name="engine.worker", **job_fields("7", "serpram-sync"))
    handler.handle(record)
    handler.handle(_record("Fired", name="engine.scheduler", **job_fields(schedule="serpram")))
    first, second = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "Job 7 active" and first["level"] == "WARNING"
    assert (first["jobId"], first["queue"], first["logger"]) == (
        "7",
        "serpram-sync",
        "engine.worker",
    )
    assert first["ts"].endswith("Z") and "schedule" not in first
    assert second["schedule"] == "serpram" and "jobId" not in second


def test_tracebacks_are_dropped_unless_debug() -> None:
    for level, kept in (("INFO", False), ("DEBUG", True)):
        handler, out, _ = _handler("json", level)
        record = _record("Error handling request")
        try:
            raise ValueError("token=secret-detail")
        except ValueError:
            record.exc_info = sys.exc_info()
        handler.handle(record)
        line = orjson.loads(out.getvalue())
        assert ("secret-detail" in out.getvalue()) is kept
        assert line["message"] == (
            "Error handling request" if kept else "Error handling request (ValueError)"
        )


def test_log_settings_from_env() -> None:
    settings = LogSettings.from_env({"ENGINE_LOG_FORMAT": "JSON", "ENGINE_LOG_LEVEL": "warning"})
    assert (settings.format, settings.level) == ("json", "WARNING")
    assert LogSettings.from_env({}, log_format="json", level="debug").format == "json"
    with pytest.raises(ValueError, match="ENGINE_LOG_FORMAT"):
        LogSettings.from_env({"ENGINE_LOG_FORMAT": "xml"})
    with pytest.raises(ValueError, match="ENGINE_LOG_REPEAT_WINDOW_S"):
        LogSettings.from_env({"ENGINE_LOG_REPEAT_WINDOW_S": "often"})


async def test_the_service_writes_json_lines_and_folds_a_malformed_request_flood(
    tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    env = _env(tmp_path, redis_factory().url, secrets.token_hex(32))
    env["ENGINE_LOG_FORMAT"] = "json"
    async with engine_process(tmp_path, env) as proc:

        async def up() -> bool:
            assert proc.proc.returncode is None, proc.log.read_text()
            return "API on http://" in proc.log.read_text()

        await wait_for(up, timeout_s=30)
        for _ in range(50):  # unauthenticated clients sending over-long headers
            reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
            writer.write(b"GET / HTTP/1.1\r\nX: " + b"a" * 10_000 + b"\r\n\r\n")
            await reader.read()
            writer.close()
        proc.proc.send_signal(signal.SIGTERM)
        assert await proc.wait_exit() == 0
    lines = [orjson.loads(line) for line in proc.log.read_text().splitlines()]  # all JSON
    malformed = [line for line in lines if "Malformed HTTP request" in line["message"]]
    assert len(malformed) == 2, malformed
    assert malformed[1]["repeated"] == 49 and malformed[0]["level"] == "WARNING"
    assert not [line for line in lines if line["level"] in ("ERROR", "CRITICAL")]
    assert {"ts", "level", "logger", "message"} <= set(lines[0])


async def test_the_lifecycle_lines_of_a_real_job_carry_its_fields(manager, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, "engine")
    queue = manager.create_queue("fields")
    job = await queue.add({"n": 1})

    async def handler(job):  # type: ignore[no-untyped-def]
        return 1

    await manager.process("fields", handler)
    assert await job.wait(timeout_s=30) == 1
    tagged = [r for r in caplog.records if getattr(r, "job_id", None) == job.id]
    assert all(r.queue == "fields" for r in tagged)
    messages = [r.getMessage() for r in tagged]
    for line in (
        f"Job {job.id} added to queue fields",
        f"Job {job.id} active in queue fields",
        f"Processing job {job.id} of queue fields",
        f"Job {job.id} completed in queue fields",
    ):
        assert any(m.startswith(line) for m in messages), line

"""TOML config: the shipped engine.toml, every field, and errors naming schedule and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config, parse_config, parse_schedule_config
from engine.lock import LeaseConfig
from engine.schedulers import AYT, SERPRAM

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_declares_the_seed_and_roadmap_schedules_exactly():
    cfg = load_config(ROOT / "engine.toml")
    assert list(cfg.schedules) == ["serpram", "ayt", "esinfa", "sercoamb", "cleanup"]
    assert cfg.schedules["serpram"] == SERPRAM and cfg.schedules["ayt"] == AYT
    s = cfg.schedules["serpram"].definition
    assert (s.queue, s.schedule.cron) == ("serpram-sync", "*/5 * * * *")
    assert s.options.to_json() == {
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 5000},
        "removeOnComplete": 50,
        "removeOnFail": 100,
    }
    a = cfg.schedules["ayt"].definition
    assert (a.queue, a.schedule.cron) == ("ayt-sync", "* * * * *")
    assert a.options.to_json() == {
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 3000},
        "removeOnComplete": 100,
        "removeOnFail": 200,
    }
    cleanup = cfg.schedules["cleanup"]
    assert cleanup.processor == "engine.processors:clean_all_queues"
    assert cleanup.definition.data == {
        "completed_grace_ms": 86_400_000,
        "failed_grace_ms": 604_800_000,
    }
    for sc in cfg.schedules.values():
        assert sc.load_processor() is not None
    assert cfg.lease == LeaseConfig(10_000, 3_000, 1_000)


def test_config_path_comes_from_engine_config(tmp_path):
    file = tmp_path / "x.toml"
    file.write_text('[schedules.a]\nqueue = "q"\nevery_ms = 1000\n')
    cfg = load_config(env={"ENGINE_CONFIG": str(file)})
    assert list(cfg.schedules) == ["a"]
    with pytest.raises(ValueError, match="not found"):
        load_config(env={"ENGINE_CONFIG": str(tmp_path / "missing.toml")})
    assert load_config(env={}, path=None).schedules is not None


def test_every_field_is_read():
    sc = parse_schedule_config(
        "demo",
        {
            "queue": "q",
            "cron": "0 3 * * *",
            "timezone": "America/Santiago",
            "processor": "engine.processors:serpram_sync",
            "concurrency": 2,
            "misfire": "all",
            "misfire_grace_ms": 5000,
            "overlap": "skip",
            "start": "2025-01-01T00:00:00Z",
            "end": 1893456000000,
            "enabled": False,
            "data": {"a": 1},
            "job_name": "nightly",
            "limit": 7,
            "job": {"attempts": 2, "priority": 3, "timeout": 1000},
        },
    )
    d = sc.definition
    assert (d.schedule.tz, d.schedule.start_ms, d.schedule.end_ms) == (
        "America/Santiago",
        1735689600000,
        1893456000000,
    )
    assert (d.misfire, d.misfire_grace_ms, d.overlap, d.job_name) == (
        "all",
        5000,
        "skip",
        "nightly",
    )
    assert (d.options.attempts, d.options.priority, d.options.timeout) == (2, 3, 1000)
    assert (sc.concurrency, sc.enabled, d.data, d.limit) == (2, False, {"a": 1}, 7)


@pytest.mark.parametrize(
    "table, message",
    [
        ({"cron": "* * * * *"}, "'queue' is required"),
        ({"queue": "q", "cron": "61 * * * *"}, "invalid cron"),
        ({"queue": "q"}, "exactly one of cron or every_ms"),
        ({"queue": "q", "cron": "* * * * *", "every_ms": 5}, "exactly one"),
        ({"queue": "q", "every_ms": 0}, "every_ms"),
        ({"queue": "q", "cron": "* * * * *", "timezone": "Mars/Olympus"}, "time zone"),
        ({"queue": "q", "cron": "* * * * *", "processor": "nope"}, "'processor'"),
        ({"queue": "q", "cron": "* * * * *", "processor": "no.such.mod:f"}, "'processor'"),
        ({"queue": "q", "cron": "* * * * *", "processor": "engine.processors:nope"}, "processor"),
        ({"queue": "q", "cron": "* * * * *", "misfire": "sometimes"}, "misfire"),
        ({"queue": "q", "cron": "* * * * *", "overlap": "x"}, "overlap"),
        ({"queue": "q", "cron": "* * * * *", "job": {"attempts": 0}}, "attempts"),
        ({"queue": "q", "cron": "* * * * *", "job": {"jobId": "x"}}, "job_id"),
        ({"queue": "q", "cron": "* * * * *", "job": {"bogus": 1}}, "bogus"),
        ({"queue": "q", "cron": "* * * * *", "start": "yesterday"}, "'start'"),
        ({"queue": "q", "cron": "* * * * *", "start": 10, "end": 5}, "end_ms"),
        ({"queue": "q", "cron": "* * * * *", "concurrency": 0}, "concurrency"),
        ({"queue": "q", "cron": "* * * * *", "limit": 0}, "limit"),
        ({"queue": "q", "cron": "* * * * *", "enabled": "yes"}, "enabled"),
        ({"queue": "q", "cron": "* * * * *", "colour": "red"}, "colour"),
        ({"queue": "bad name", "cron": "* * * * *"}, "queue name"),
    ],
)
def test_config_errors_name_the_schedule_and_field(table, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_schedule_config("mine", table)
    assert "schedule 'mine'" in str(info.value)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"lease": {"ttl_ms": 3000, "renew_interval_ms": 2000}}, "renew_interval_ms"),
        ({"lease": {"ttl": 3000}}, "ttl"),
        ({"engine": {"prefix": "a b"}}, "prefix"),
        ({"schedule": {}}, "schedule"),
        ({"schedules": {"a:b": {"queue": "q", "every_ms": 1000}}}, "schedule name"),
    ],
)
def test_top_level_errors_name_the_field(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_config(raw)


def test_invalid_toml_is_a_value_error(tmp_path):
    file = tmp_path / "bad.toml"
    file.write_text("[schedules.a\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(file)

import math

import pytest

from engine.options import (
    DEFAULT_KEEP_COMPLETED,
    DEFAULT_KEEP_FAILED,
    MAX_PRIORITY,
    Backoff,
    JobOptions,
    Retention,
)


def test_defaults_keep_a_bounded_number_of_finished_jobs():
    opts = JobOptions.parse(None)
    assert opts.attempts == 1
    assert opts.remove_on_complete == Retention(count=DEFAULT_KEEP_COMPLETED)
    assert opts.remove_on_fail == Retention(count=DEFAULT_KEEP_FAILED)
    assert opts.to_json() == {}


def test_seed_serpram_options_in_camel_case_round_trip():
    raw = {
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 5000},
        "removeOnComplete": 50,
        "removeOnFail": 100,
    }
    opts = JobOptions.parse(raw)
    assert opts.attempts == 3
    assert opts.backoff == Backoff("exponential", 5000)
    assert opts.remove_on_complete == Retention(count=50)
    assert opts.remove_on_fail == Retention(count=100)
    assert opts.to_json() == raw
    assert JobOptions.from_json(opts.to_json()) == opts


def test_snake_case_and_job_defaults_layer_over_queue_defaults():
    base = JobOptions.parse({"attempts": 5, "priority": 3})
    opts = JobOptions.parse({"job_id": "fixed-1", "delay": 1000}, base)
    assert (opts.attempts, opts.priority, opts.job_id, opts.delay) == (5, 3, "fixed-1", 1000)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"attemps": 3}, "attemps"),
        ({"attempts": 0}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"attempts": 2.5}, "attempts"),
        ({"attempts": math.inf}, "attempts"),
        ({"delay": -1}, "delay"),
        ({"delay": "10"}, "delay"),
        ({"priority": -1}, "priority"),
        ({"priority": MAX_PRIORITY + 1}, "priority"),
        ({"timeout": 0}, "timeout"),
        ({"backoff": {"type": "linear", "delay": 5}}, "backoff.type"),
        ({"backoff": {"type": "fixed", "delay": -5}}, "backoff.delay"),
        ({"backoff": {"type": "fixed", "jitter": 2}}, "backoff.jitter"),
        ({"backoff": {"type": "fixed", "factor": 2}}, "factor"),
        ({"backoff": "soon"}, "backoff"),
        ({"removeOnComplete": -1}, "remove_on_complete"),
        ({"removeOnFail": {"age": -3}}, "remove_on_fail.age"),
        ({"removeOnFail": {"keep": 3}}, "keep"),
        ({"removeOnFail": "yes"}, "remove_on_fail"),
        ({"jobId": ""}, "job_id"),
        ({"jobId": "123"}, "job_id"),
        ({"jobId": "a{b}"}, "job_id"),
        ({"jobId": "x" * 201}, "job_id"),
        ({"jobId": "a", "job_id": "b"}, "job_id"),
    ],
)
def test_bad_option_raises_value_error_naming_the_field(raw, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        JobOptions.parse(raw)


def test_options_must_be_a_mapping():
    with pytest.raises(ValueError, match="mapping"):
        JobOptions.parse([("attempts", 1)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, Retention(count=0)),
        (False, Retention()),
        (50, Retention(count=50)),
        ({"age": 3600}, Retention(age_s=3600)),
        ({"age": 60, "count": 10}, Retention(count=10, age_s=60)),
    ],
)
def test_retention_forms(value, expected):
    r = Retention.parse("remove_on_complete", value)
    assert r == expected
    assert Retention.parse("x", r.to_json()) == r


@pytest.mark.parametrize(
    ("backoff", "attempts_made", "expected"),
    [
        (Backoff("exponential", 5000), 1, 5000),
        (Backoff("exponential", 5000), 2, 10000),
        (Backoff("exponential", 5000), 3, 20000),
        (Backoff("exponential", 3000), 3, 12000),
        (Backoff("fixed", 10000), 4, 10000),
    ],
)
def test_backoff_delays_match_the_seed(backoff, attempts_made, expected):
    assert backoff.delay_for(attempts_made) == expected


def test_backoff_jitter_only_shortens_within_its_fraction():
    b = Backoff("fixed", 1000, jitter=0.5)
    assert b.delay_for(1, rand=0.0) == 1000
    assert b.delay_for(1, rand=0.999) == 500
    assert Backoff.parse(250) == Backoff("fixed", 250)

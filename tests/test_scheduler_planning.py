"""plan_fires, the pure part of firing: policy tables, long gaps, and a brute-force oracle."""

from __future__ import annotations

import random

import pytest

from engine.cron import next_fire
from engine.scheduler import (
    MAX_FIRES_PER_CALL,
    MAX_MISSED_LISTED,
    define_schedule,
    plan_fires,
    planning,
)
from engine.scheduler.planning import MAX_CRON_COUNT, FirePlan, latest_tick

S = 1000
MINUTE = 60 * S
DAY = 86_400 * S
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z


def every(ms: int, **kw):
    return define_schedule("tick", "q", every_ms=ms, **kw)


def cron(expr: str, tz: str = "UTC", **kw):
    return define_schedule("tick", "q", cron=expr, tz=tz, **kw)


@pytest.mark.parametrize(
    "misfire, grace, now, fire, missed",
    [
        ("once", 100, 10 * S, [10 * S], list(range(S, 10 * S, S))),
        ("once", 100, 1 * S, [S], []),
        ("skip", 100, 10 * S, [10 * S], list(range(S, 10 * S, S))),
        ("skip", 100, 10 * S + 101, [], list(range(S, 11 * S, S))),
        ("skip", 500, 10 * S + 400, [10 * S], list(range(S, 10 * S, S))),
        ("all", 3 * S, 10 * S, [7 * S, 8 * S, 9 * S, 10 * S], list(range(S, 7 * S, S))),
        ("all", 10**9, 5 * S, [S, 2 * S, 3 * S, 4 * S, 5 * S], []),
        ("all", 100, 5 * S + 101, [], list(range(S, 6 * S, S))),
    ],
)
def test_misfire_policy_plans(misfire, grace, now, fire, missed):
    d = every(S, misfire=misfire, misfire_grace_ms=grace)
    plan = plan_fires(d, S, now)
    assert list(plan.fire) == fire
    assert list(plan.missed) == missed
    assert plan.extra_missed == 0 and plan.exact
    assert plan.next_ms == (now // S + 1) * S


def test_plan_for_a_tick_not_yet_due_is_empty():
    plan = plan_fires(every(S), 5 * S, 4 * S)
    assert (plan.fire, plan.missed, plan.next_ms) == ((), (), 5 * S)


def test_catch_up_of_all_is_chunked():
    d = every(S, misfire="all", misfire_grace_ms=10**12)
    plan = plan_fires(d, S, 1000 * S)
    assert len(plan.fire) == MAX_FIRES_PER_CALL
    assert plan.next_ms == (MAX_FIRES_PER_CALL + 1) * S  # the rest in the next call
    assert plan.missed_count == 0


def test_every_ms_counts_a_70_day_gap_exactly_and_lists_only_the_first_ticks():
    now = T0 + 70 * DAY + 123
    plan = plan_fires(every(S, misfire="once"), T0, now)
    assert plan.fire == (T0 + 70 * DAY,)
    assert plan.missed == tuple(T0 + i * S for i in range(MAX_MISSED_LISTED))
    assert plan.exact and plan.missed_count == 70 * 86_400  # every tick before the latest
    assert plan.extra_from == T0 + MAX_MISSED_LISTED * S
    assert plan.next_ms == T0 + 70 * DAY + S


def test_cron_after_70_days_jumps_to_the_latest_tick_and_says_at_least():
    d = cron("* * * * *", misfire="once")
    now = T0 + 70 * DAY + 30 * S
    plan = plan_fires(d, T0, now)
    assert plan.fire == (T0 + 70 * DAY,)
    assert plan.next_ms == T0 + 70 * DAY + MINUTE
    assert plan.missed == tuple(T0 + i * MINUTE for i in range(MAX_MISSED_LISTED))
    assert not plan.exact  # 100 800 were missed: more than the count budget
    assert plan.missed_count == MAX_CRON_COUNT + 1 <= 70 * 1440
    assert plan.extra_from == T0 + MAX_MISSED_LISTED * MINUTE


def test_cron_skip_after_6_days_of_ten_second_ticks():
    d = cron("*/10 * * * * *", misfire="skip", misfire_grace_ms=5_000)
    now = T0 + 6 * DAY + 4 * S
    plan = plan_fires(d, T0, now)
    assert plan.fire == (T0 + 6 * DAY,) and plan.next_ms == T0 + 6 * DAY + 10 * S
    late = plan_fires(d, T0, T0 + 6 * DAY + 6 * S)  # the latest too is past the grace
    assert late.fire == () and late.next_ms == T0 + 6 * DAY + 10 * S
    assert not late.exact and late.missed_count == MAX_CRON_COUNT + 1


def test_cron_all_enumerates_only_the_grace_window():
    d = cron("* * * * *", misfire="all", misfire_grace_ms=5 * MINUTE)
    now = T0 + 70 * DAY
    plan = plan_fires(d, T0, now)
    assert plan.fire == tuple(now - i * MINUTE for i in range(5, -1, -1))
    assert plan.next_ms == now + MINUTE


def test_cron_count_is_exact_below_the_budget():
    d = cron("0 * * * *", misfire="once")
    plan = plan_fires(d, T0, T0 + 150 * 3600 * S + 5)
    assert plan.exact and plan.missed_count == 150
    assert plan.fire == (T0 + 150 * 3600 * S,)


def test_end_bound_stops_the_jump_at_the_last_tick():
    d = define_schedule("t", "q", every_ms=S, end_ms=T0 + 10 * S, misfire="once")
    plan = plan_fires(d, T0, T0 + DAY)
    assert plan.fire == (T0 + 10 * S,) and plan.next_ms is None and plan.missed_count == 10
    c = define_schedule("c", "q", cron="* * * * *", end_ms=T0 + 10 * MINUTE, misfire="once")
    plan = plan_fires(c, T0, T0 + DAY)
    assert plan.fire == (T0 + 10 * MINUTE,) and plan.next_ms is None and plan.missed_count == 10


def _calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = planning.next_fire

    def counting(schedule, after_ms):
        calls.append(after_ms)
        return real(schedule, after_ms)

    monkeypatch.setattr(planning, "next_fire", counting)
    return calls


@pytest.mark.parametrize("misfire", ["skip", "once", "all"])
@pytest.mark.parametrize("expr", ["* * * * *", "*/10 * * * * *", "*/15 1 * * *"])
def test_planning_work_does_not_grow_with_the_gap(monkeypatch, misfire, expr):
    """Two months and ten years of missed ticks cost about the same number of next_fire
    calls (bisection: one more per doubling of the gap), far below the ticks missed."""
    d = cron(expr, "America/New_York", misfire=misfire, misfire_grace_ms=MINUTE)
    calls = _calls(monkeypatch)
    plan_fires(d, next_fire(d.schedule, T0), T0 + 60 * DAY)
    months = len(calls)
    calls.clear()
    plan_fires(d, next_fire(d.schedule, T0), T0 + 3650 * DAY)
    decade = len(calls)
    assert decade <= months + 10
    assert decade <= MAX_CRON_COUNT + MAX_FIRES_PER_CALL + 100


def test_an_on_time_cron_fire_costs_three_next_fire_calls(monkeypatch):
    d = cron("*/5 * * * *")
    calls = _calls(monkeypatch)
    plan = plan_fires(d, T0, T0 + 7)
    assert plan == FirePlan((T0,), (), 0, T0 + 5 * MINUTE)
    assert len(calls) == 3


# -- against a brute-force planner -------------------------------------------------------------


def reference_plan(d, expected: int, now: int) -> tuple[list[int], list[int], int | None]:
    """Every due tick enumerated, then the policy as documented."""
    due: list[int] = []
    tick: int | None = expected
    while tick is not None and tick <= now:
        due.append(tick)
        tick = next_fire(d.schedule, tick)
    if not due:
        return [], [], expected
    grace = d.misfire_grace_ms
    nxt = next_fire(d.schedule, due[-1])
    if d.misfire == "once":
        return due[-1:], due[:-1], nxt
    if d.misfire == "skip":
        fire = due[-1:] if now - due[-1] <= grace else []
        return fire, due[: len(due) - len(fire)], nxt
    fire = [t for t in due if now - t <= grace]
    missed = [t for t in due if now - t > grace]
    if len(fire) > MAX_FIRES_PER_CALL:
        nxt, fire = fire[MAX_FIRES_PER_CALL], fire[:MAX_FIRES_PER_CALL]
    return fire, missed, nxt


SCHEDULES = [
    ("every", 1000, "UTC"),
    ("every", 7000, "UTC"),
    ("cron", "* * * * *", "UTC"),
    ("cron", "*/10 * * * * *", "Europe/Madrid"),
    ("cron", "*/15 1 * * *", "America/New_York"),
    ("cron", "30 2 * * *", "America/New_York"),
    ("cron", "0 * * * *", "Australia/Lord_Howe"),
    ("cron", "0 9 * * 1-5", "Asia/Kolkata"),
]
DST_INSTANTS = [1_793_512_800_000, 1_772_953_200_000, 1_774_746_000_000, 1_775_314_800_000]


def _cases(count: int, seed: int):
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        kind, value, tz = rng.choice(SCHEDULES)
        if kind == "every":
            d = every(value, misfire=rng.choice(["skip", "once", "all"]),
                      misfire_grace_ms=rng.choice([100, 5_000, 60_000, 10**9]))  # fmt: skip
        else:
            d = cron(value, tz, misfire=rng.choice(["skip", "once", "all"]),
                     misfire_grace_ms=rng.choice([100, 60_000, 3_600_000, 10**10]))  # fmt: skip
        base = rng.choice(DST_INSTANTS) - rng.randrange(2 * DAY)
        expected = next_fire(d.schedule, base)
        assert expected is not None
        # Mostly short gaps; some past the count budget.
        ticks = rng.choice([0, 1, 2, 5, 30, 99, 100, 101, 150, 199, 200, 201, 202, 260])
        now = expected
        for _ in range(ticks):
            now = next_fire(d.schedule, now)
        now += rng.choice([0, 1, 50, 99, 101, 999])
        out.append((d, expected, now))
    return out


@pytest.mark.parametrize(("d", "expected", "now"), _cases(60, seed=12))
def test_plan_matches_the_brute_force_planner(d, expected, now):
    fire, missed, nxt = reference_plan(d, expected, now)
    plan = plan_fires(d, expected, now)
    assert list(plan.fire) == fire
    assert plan.next_ms == nxt
    assert list(plan.missed) == missed[:MAX_MISSED_LISTED]
    if d.schedule.every_ms is not None or len(missed) <= MAX_CRON_COUNT:
        assert plan.exact and plan.missed_count == len(missed)
    else:
        assert not plan.exact and plan.missed_count == MAX_CRON_COUNT + 1 <= len(missed)
    unlisted = missed[MAX_MISSED_LISTED:]
    assert plan.extra_from == (unlisted[0] if unlisted else None)


def test_latest_tick_bisection_agrees_with_walking():
    d = cron("*/20 * * * *", "America/New_York")
    start = next_fire(d.schedule, 1_793_512_800_000 - 4 * 3600 * S)
    assert start is not None
    tick, walked = start, [start]
    while (tick := next_fire(d.schedule, tick)) <= start + 8 * 3600 * S:  # type: ignore[operator]
        walked.append(tick)
    for t in walked:
        for offset in (0, 1, 599_999):
            assert latest_tick(d.schedule, start, t + offset) == t

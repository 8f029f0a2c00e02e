"""engine.cron against independent implementations: cronsim (Python) and cron-parser (npm).

Random expressions (5 and 6 fields), zones with unusual transitions, and windows placed
mostly around DST transitions. For each case the fire times in (after, until] are compared;
a disagreement must fall in one of the documented classes (docs/ARCHITECTURE.md, "Cron and
daylight saving time"), anything else is a failure. Every DST class also requires the
engine to agree with the brute-force oracle of tests/cron_reference.py (a third, independent
implementation of the documented rules):

cronsim (Debian cron's rules):
- ``six_field_fixed``: a 6-field expression whose minute and hour are fixed, at a transition.
  cronsim follows real time for every 6-field expression; the engine classifies 6 fields by
  the same minute/hour rule as 5.
- ``day_step``: a day field written ``*/n`` (or ``*-...``) while the other day field is
  restricted. Vixie/cronsim treat it as ``*`` (day of month AND day of week), the engine
  as croniter and cron-parser do (OR).
- ``cronsim_odd_transition``: at transitions that are not a one-hour shift on the hour
  (Lord Howe's 30 minutes, Chatham's 02:45, Santiago's and Havana's midnight) cronsim
  returns wall times that do not match the expression (``* 0 * * sun`` at 01:00 on the
  Sunday whose hour 0 was skipped) or steps over real matches.
- ``one_value_range_step``: ``N-N/s``. cronsim reads it as ``N/s`` (N to the field's end);
  Vixie cron and the engine as ``N``.

cron-parser (classifies by the hour field only, shifts skipped times by the gap):
- ``parser_dst``: every differing fire time lies within 6 hours of a transition.
- ``gave_up``: cron-parser threw ("loop limit exceeded", seen on 30-minute shifts) or went
  back in time (the same hour over and over at Chatham's fall back), or
  cronsim did not finish within 5 s (it loops forever at Chatham's fall back).

``python -m tests.cron_differential --seeds 1,2,3 --cases 2000 [--node]`` prints the figures
(``make cron-diff``).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from cronsim import CronSim

from engine.cron import _compile, next_fire, parse_schedule
from tests.cron_reference import fires as reference_fires
from tests.cron_reference import transitions

NODE_DIR = Path(__file__).with_name("cron_node")
HOUR = 3600_000
NEAR_MS = 6 * HOUR
ZONES = [
    "America/New_York",
    "Europe/Madrid",
    "Europe/London",
    "America/Santiago",
    "Australia/Lord_Howe",  # 30-minute shift
    "Antarctica/Troll",  # 2-hour shift
    "Pacific/Chatham",
    "America/St_Johns",
    "America/Havana",  # transitions at midnight
    "Australia/Sydney",
    "UTC",
]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Transitions that are not a one-hour shift on the hour: 30 minutes (Lord Howe), at 02:45
# (Chatham), at midnight so that a whole date's hour 0 is skipped (Santiago, Havana).
ODD_TRANSITIONS = {"Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago", "America/Havana"}


@dataclass(frozen=True, slots=True)
class Case:
    expr: str
    tz: str
    after: int
    until: int


@dataclass(slots=True)
class Tally:
    cases: int = 0
    agree: int = 0
    documented: Counter[str] = field(default_factory=Counter)
    unexplained: list[tuple[Case, list[int], list[int]]] = field(default_factory=list)

    def line(self, name: str) -> str:
        doc = ", ".join(f"{k} {v}" for k, v in sorted(self.documented.items())) or "none"
        return (
            f"{name}: {self.cases} cases, {self.agree} identical, documented differences: "
            f"{doc}; unexplained: {len(self.unexplained)}"
        )


def _minute(rng: random.Random, top: int) -> str:
    kind = rng.randrange(9)
    if kind <= 1:
        return "*"
    if kind == 2:
        return f"*/{rng.choice([5, 7, 10, 15, 20, 30])}"
    if kind == 3:
        return str(rng.randrange(top + 1))
    if kind == 4:
        low = rng.randrange(top)
        return f"{low}-{rng.randrange(low, top + 1)}/{rng.choice([1, 5, 10])}"
    if kind == 5:
        return f"{rng.randrange(top + 1)}"
    return ",".join(str(v) for v in sorted(rng.sample(range(top + 1), rng.randrange(1, 4))))


def _hour(rng: random.Random) -> str:
    kind = rng.randrange(8)
    near = [0, 1, 2, 3, 22, 23]
    if kind <= 1:
        return "*"
    if kind == 2:
        return f"*/{rng.choice([2, 3, 5])}"
    if kind <= 4:
        return str(rng.choice(near))
    if kind == 5:
        low = rng.choice(near[:4])
        return f"{low}-{low + rng.randrange(3)}"
    return ",".join(str(v) for v in sorted(rng.sample(near, 2)))


def random_expression(rng: random.Random, seconds: bool) -> str:
    fields = [
        _minute(rng, 59),
        _hour(rng),
        rng.choice(["*"] * 8 + ["1-15", "5,20", "*/2", "10-31"]),
        rng.choice(["*"] * 6 + ["JAN-JUN", "mar,apr,oct,nov", "*/2", "9-12"]),
        rng.choice(["*"] * 6 + ["MON-FRI", "sun", "0,6", "7", "sat,sun", "1-3"]),
    ]
    if seconds:
        # Few seconds per minute keep the engine side of the comparison cheap.
        fields.insert(0, rng.choice(["0", "*/20", "5,35", "0-2", "59", "30"]))
    return " ".join(fields)


def random_cases(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    out: list[Case] = []
    for i in range(count):
        seconds = i % 4 == 3
        tz = rng.choice(ZONES)
        changes = transitions(tz, 2025, 2029)
        if changes and rng.random() < 0.85:
            anchor = rng.choice(changes)
        else:
            anchor = 1_767_225_600_000 + rng.randrange(3 * 365 * 86_400_000)
        span = 2 * HOUR if seconds else 12 * HOUR
        # Whole seconds: cronsim works in seconds.
        after = (anchor - rng.randrange(span * 3 // 4)) // 1000 * 1000
        out.append(Case(random_expression(rng, seconds), tz, after, after + span))
    return out


def engine_fires(case: Case) -> list[int]:
    schedule = parse_schedule(case.expr, tz=case.tz)
    out: list[int] = []
    fire = next_fire(schedule, case.after)
    while fire is not None and fire <= case.until:
        out.append(fire)
        fire = next_fire(schedule, fire)
    return out


class _Hung(Exception):
    pass


def _hung(signum: int, frame: object) -> None:
    raise _Hung


def cronsim_fires(case: Case, limit_s: float = 5.0) -> list[int] | None:
    """None when cronsim did not finish within ``limit_s`` (it loops forever at Chatham's
    fall back, 03:45 -> 02:45, for some expressions)."""
    start = (EPOCH + timedelta(milliseconds=case.after)).astimezone(ZoneInfo(case.tz))
    out: list[int] = []
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    try:
        for moment in CronSim(case.expr, start):
            ms = (moment.astimezone(UTC) - EPOCH) // timedelta(milliseconds=1)
            if ms > case.until:
                break
            if ms > case.after and (not out or ms > out[-1]):
                out.append(ms)
    except _Hung:
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return out


def cron_parser_fires(cases: list[Case]) -> list[list[int] | None]:
    """All cases through one node process (tests/cron_node/fires.mjs); None where
    cron-parser gave up (it throws "loop limit exceeded" on some 30-minute shifts)."""
    if not (NODE_DIR / "node_modules" / "cron-parser").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True
        )
    payload = "".join(json.dumps(_case_json(case)) + "\n" for case in cases)
    done = subprocess.run(
        ["node", "fires.mjs"], cwd=NODE_DIR, input=payload, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(replies) == len(cases)
    return [None if isinstance(reply, dict) else reply for reply in replies]


def _case_json(case: Case) -> dict[str, object]:
    return {"expr": case.expr, "tz": case.tz, "after": case.after, "until": case.until}


def _near_transition(case: Case, times: set[int]) -> bool:
    changes = transitions(case.tz, 2024, 2030)
    return all(any(abs(t - c) <= NEAR_MS for c in changes) for t in times)


_ONE_VALUE_STEP = re.compile(r"(?<![\d-])(\d+)-\1/\d+")


def _day_step(expr: str) -> bool:
    fields = expr.split()
    dom, dow = fields[-3], fields[-1]
    return (dom.startswith("*") and dom != "*" and dow != "*") or (
        dow.startswith("*") and dow != "*" and dom != "*"
    )


def _oracle_agrees(case: Case, ours: list[int]) -> bool:
    return reference_fires(case.expr, case.tz, case.after, case.until) == ours


def classify_cronsim(case: Case, ours: list[int], theirs: list[int]) -> str | None:
    """The documented class of a disagreement with cronsim, None if unexplained."""
    differing = set(ours) ^ set(theirs)
    if _day_step(case.expr):
        return "day_step"
    if _ONE_VALUE_STEP.search(case.expr):
        return "one_value_range_step"
    six = len(case.expr.split()) == 6
    if not _near_transition(case, differing) or not _oracle_agrees(case, ours):
        return None
    if six and not _compile(case.expr).wildcard:
        return "six_field_fixed"
    if case.tz in ODD_TRANSITIONS:
        return "cronsim_odd_transition"
    return None


def classify_parser(case: Case, ours: list[int], theirs: list[int]) -> str | None:
    differing = set(ours) ^ set(theirs)
    if _near_transition(case, differing) and _oracle_agrees(case, ours):
        return "parser_dst"
    return None


def run(cases: list[Case], node: bool) -> tuple[Tally, Tally | None]:
    sim, parser = Tally(), Tally() if node else None
    ours_all = [engine_fires(c) for c in cases]
    theirs_parser = cron_parser_fires(cases) if node else []
    for i, case in enumerate(cases):
        ours = ours_all[i]
        checks = [(sim, cronsim_fires(case), classify_cronsim)]
        if parser is not None:
            checks.append((parser, theirs_parser[i], classify_parser))
        for tally, theirs, classify in checks:
            tally.cases += 1
            if theirs is None:
                tally.documented["gave_up"] += 1
                continue
            if ours == theirs:
                tally.agree += 1
                continue
            kind = classify(case, ours, theirs)
            if kind is None:
                tally.unexplained.append((case, ours, theirs))
            else:
                tally.documented[kind] += 1
    return sim, parser


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--cases", type=int, default=1000, help="per seed")
    ap.add_argument("--node", action="store_true", help="also compare with cron-parser")
    args = ap.parse_args(argv)
    failed = False
    totals = {"cronsim": Tally(), "cron-parser": Tally()}
    for seed in (int(s) for s in args.seeds.split(",")):
        sim, parser = run(random_cases(args.cases, seed), args.node)
        print(f"seed {seed}: " + sim.line("cronsim"))
        if parser is not None:
            print(f"seed {seed}: " + parser.line("cron-parser"))
        for name, tally in (("cronsim", sim), ("cron-parser", parser)):
            if tally is None:
                continue
            total = totals[name]
            total.cases += tally.cases
            total.agree += tally.agree
            total.documented.update(tally.documented)
            total.unexplained += tally.unexplained
            for case, ours, theirs in tally.unexplained[:5]:
                failed = True
                print(f"  UNEXPLAINED vs {name}: {case}")
                print(f"    engine {ours[:8]}\n    other  {theirs[:8]}")
    for name, total in totals.items():
        if total.cases:
            print("total " + total.line(name))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

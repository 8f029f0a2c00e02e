"""The model's checks fire on the defects they name, and stay quiet on a healthy history
(synthetic snapshots: no Redis)."""

from __future__ import annotations

from tests.model.invariants import Checker, Limits, WorkerLife
from tests.model.snapshot import STRUCTURES, Event, Snapshot

T0 = 1_700_000_000_000  # ms


def _checker() -> Checker:
    c = Checker(Limits(4000, 500, keep_completed=3, keep_failed=2, claim_bound_ms=3000,
                       recovery_slack_ms=3000))  # fmt: skip
    c.workers["w1"] = WorkerLife("w1", worker_id="W1", started=T0 / 1000 - 60)
    return c


def _snap(now_ms: int, jobs: dict[str, str], events: list[tuple[int, str, str]]) -> Snapshot:
    """``jobs``: id -> structure; ``events``: (ms, event, job id)."""
    members: dict[str, list[str]] = {s: [] for s in STRUCTURES}
    scores: dict[str, dict[str, float]] = {
        s: {} for s in ("active", "delayed", "completed", "failed")
    }
    hashes = {}
    for job_id, where in jobs.items():
        members[where].append(job_id)
        if where in scores:
            scores[where][job_id] = now_ms + 4000 if where == "active" else now_ms
        hashes[job_id] = {"data": '{"p": "a1", "i": 0}' if job_id == "1" else "{}", "ts": "1"}
    evs = []
    for i, (ms, name, job) in enumerate(events):
        fields = {"event": name, "jobId": job}
        if name == "active":
            fields["worker"] = "W1"
        evs.append(Event(f"{ms}-{i}", ms, name, fields))
    return Snapshot(now_ms, members, scores, False, hashes, evs)


def _codes(c: Checker) -> set[str]:
    return {v.code for v in c.violations}


def test_a_healthy_history_breaks_nothing() -> None:
    c = _checker()
    c.check(_snap(T0, {"1": "wait"}, [(T0, "waiting", "1")]), [], T0 / 1000)
    c.check(_snap(T0 + 10, {"1": "active"}, [(T0 + 10, "active", "1")]), [], T0 / 1000)
    ledger = [
        {"ev": "start", "job": "1", "pon": T0 + 10, "p": "a1", "i": 0},
        {"ev": "end", "job": "1", "pon": T0 + 10, "p": "a1", "i": 0, "ok": True, "t": T0 / 1000},
    ]
    c.check(_snap(T0 + 30, {"1": "completed"}, [(T0 + 30, "completed", "1")]), ledger, T0 / 1000)
    assert c.violations == []


def test_each_defect_gets_its_code() -> None:
    c = _checker()
    # A job in two states, one in none, a job duplicated by a resent add.
    c.check(
        _snap(
            T0,
            {"1": "wait", "2": "active"},
            [(T0, "waiting", "1"), (T0, "waiting", "2"), (T0, "active", "2")],
        ),
        [{"ev": "start", "job": "9", "pon": 1, "p": "a1", "i": 0}],  # a second job of a1/0
        T0 / 1000,
    )
    snap = _snap(T0 + 5, {"1": "wait"}, [])
    snap.members["delayed"].append("1")
    c.check(snap, [], T0 / 1000)
    # A stall of a healthy worker's claim, then a second completion in one life.
    events = [
        (T0 + 4600, "stalled", "2"),
        (T0 + 4700, "completed", "2"),
        (T0 + 4800, "completed", "2"),
    ]
    c.check(_snap(T0 + 4900, {"1": "wait", "2": "completed"}, events), [], (T0 + 4900) / 1000)
    # A completed job deleted with no clean and too few newer ones to push it out.
    c.check(_snap(T0 + 5000, {"1": "wait"}, []), [], (T0 + 5000) / 1000)
    assert {"STATE", "ADD_DUP", "SPURIOUS_STALL", "DOUBLE_FINISH", "VANISHED"} <= _codes(c)


def test_a_killed_workers_stall_is_expected() -> None:
    c = _checker()
    c.check(_snap(T0, {"2": "active"}, [(T0, "waiting", "2"), (T0, "active", "2")]), [], T0 / 1000)
    c.workers["w1"].killed = (T0 + 100) / 1000
    c.check(_snap(T0 + 4600, {"2": "wait"}, [(T0 + 4600, "stalled", "2")]), [], (T0 + 4600) / 1000)
    assert "SPURIOUS_STALL" not in _codes(c)


def _with(snap: Snapshot, fields: dict[int, dict[str, str]]) -> Snapshot:
    """Extra fields on the snapshot's events, by index."""
    for i, extra in fields.items():
        ev = snap.events[i]
        snap.events[i] = Event(ev.id, ev.ms, ev.name, {**ev.fields, **extra})
    return snap


def test_a_cancel_ends_its_job_failed_and_nothing_of_that_life_follows() -> None:
    c = _checker()
    c.check(_snap(T0, {"1": "active"}, [(T0, "waiting", "1"), (T0, "active", "1")]), [], T0 / 1000)
    # The handler had succeeded just before: the cancel supersedes it (no LOST_OUTCOME).
    ledger = [
        {"ev": "start", "job": "1", "pon": T0, "p": "a1", "i": 0},
        {"ev": "end", "job": "1", "pon": T0, "p": "a1", "i": 0, "ok": True, "t": T0 / 1000},
    ]
    snap = _snap(T0 + 20, {"1": "failed"}, [(T0 + 20, "cancelled", "1"), (T0 + 20, "failed", "1")])
    _with(snap, {0: {"by": "adm1"}, 1: {"failedReason": "cancelled by adm1"}})
    c.check(snap, ledger, (T0 + 20) / 1000)
    assert c.violations == []
    # Claimed again in the same life: a defect.
    c.check(_snap(T0 + 40, {"1": "active"}, [(T0 + 40, "active", "1")]), [], (T0 + 40) / 1000)
    assert _codes(c) == {"CANCEL"}


def test_a_cancel_with_the_wrong_reason_is_a_defect() -> None:
    c = _checker()
    snap = _snap(T0, {"1": "failed"}, [(T0, "waiting", "1"), (T0, "cancelled", "1"),
                                        (T0, "failed", "1")])  # fmt: skip
    _with(snap, {1: {"by": "adm1"}, 2: {"failedReason": "boom"}})
    c.check(snap, [], T0 / 1000)
    assert _codes(c) == {"CANCEL"}


def test_two_claims_two_ms_apart_are_told_apart() -> None:
    """Seed 102 of `make fuzz`: a job failed with a 0 ms retry and claimed again 2 ms
    later; each handler is matched to its own claim, not the nearer-below one."""
    c = _checker()
    events = [(T0, "waiting", "1"), (T0, "active", "1"), (T0 + 2, "retrying", "1"),
              (T0 + 2, "active", "1"), (T0 + 3, "completed", "1")]  # fmt: skip
    ledger = [
        {"ev": "start", "job": "1", "pon": T0, "p": "a1", "i": 0, "w": "w1"},
        {"ev": "end", "job": "1", "pon": T0, "p": "a1", "i": 0, "ok": False, "t": T0 / 1000},
        {"ev": "start", "job": "1", "pon": T0 + 2, "p": "a1", "i": 0, "w": "w1"},
        {"ev": "end", "job": "1", "pon": T0 + 2, "p": "a1", "i": 0, "ok": True, "t": T0 / 1000},
    ]
    c.check(_snap(T0 + 10, {"1": "completed"}, events), ledger, (T0 + 10) / 1000)
    assert c.violations == []


def test_a_lease_lost_line_is_matched_to_the_attempt_it_names() -> None:
    """Seed 104 of `make fuzz`: a claim's reply came late, its deadline passed and the
    job was handed back (`released`), and the same worker claimed it again; the warning
    about the first attempt came 2 ms after the second claim. It names its attempt's
    claim time, so it is checked against the first claim (lost indeed)."""
    from datetime import UTC, datetime

    c = _checker()
    events = [(T0, "waiting", "1"), (T0, "active", "1"), (T0 + 800, "released", "1"),
              (T0 + 802, "active", "1"), (T0 + 900, "completed", "1")]  # fmt: skip
    ledger = [
        {"ev": "start", "job": "1", "pon": T0, "p": "a1", "i": 0, "w": "w1"},
        {"ev": "start", "job": "1", "pon": T0 + 802, "p": "a1", "i": 0, "w": "w1"},
        {"ev": "end", "job": "1", "pon": T0 + 802, "p": "a1", "i": 0, "ok": True, "t": T0 / 1000},
    ]
    c.check(_snap(T0 + 1000, {"1": "completed"}, events), ledger, (T0 + 1000) / 1000)
    claimed = datetime.fromtimestamp(T0 / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    line = (
        f"{(T0 + 804) / 1000:.3f} WARNING engine.worker Lease lost on job 1 of queue model "
        f"(its attempt claimed at {claimed}); its outcome will be refused"
    )
    c.check_logs("w1", [line], (T0 + 1000) / 1000)
    assert c.violations == []
    # About the second attempt, whose lease held, the same warning is a defect.
    second = datetime.fromtimestamp((T0 + 802) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.802Z")
    c.check_logs("w1", [line.replace(claimed, second)], (T0 + 1000) / 1000)
    assert _codes(c) == {"FALSE_LEASE_LOST"}


def test_a_job_cancelled_running_with_remove_on_fail_counts_as_kept() -> None:
    """`make fuzz` seed 102: cancel_job keeps a running job in `failed` despite
    removeOnFail: true (its worker's renewal reads the hash), and retention counts it; a
    job trimmed because of it did not vanish."""
    c = _checker()  # keep_failed=2
    jobs = {"x": "failed", "a": "failed", "b": "failed"}
    events = [(T0, "waiting", "x"), (T0, "waiting", "a"), (T0, "waiting", "b"),
              (T0 + 1, "failed", "x"), (T0 + 2, "active", "a"), (T0 + 10, "cancelled", "a"),
              (T0 + 10, "failed", "a"), (T0 + 20, "failed", "b")]  # fmt: skip
    snap = _with(_snap(T0 + 20, jobs, events), {5: {"prev": "active", "by": "adm1"}})
    snap.jobs["a"]["opts"] = '{"removeOnFail": true}'
    _with(snap, {6: {"failedReason": "cancelled by adm1"}})
    c.check(snap, [], (T0 + 20) / 1000)
    # b's retention (keep 2) counted a and deleted x.
    c.check(_snap(T0 + 30, {"a": "failed", "b": "failed"}, []), [], (T0 + 30) / 1000)
    assert "VANISHED" not in _codes(c) and "RETENTION" not in _codes(c), c.violations

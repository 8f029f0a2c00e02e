"""The invariants the model-based test checks after every step, from an atomic snapshot of
Redis (snapshot.py), the handlers' ledger (worker_main.py) and what the driver did.

Each violation has a code (stable, for FINDINGS.md and for grouping) and says which job
and why. The codes:

STATE            a job hash in no state or in two; an id in a state with no hash; an id
                 twice in ``wait``
ADD_DUP          one entry of one add call made two jobs (a resent add)
ADD_LOST         (end) a job a successful add returned, or any job seen, that neither
                 finished nor was removed
DOUBLE_FINISH    a job completed (or finished) twice in one life (no re-add, no admin
                 retry in between)
DOUBLE_RUN       the handler ran twice for one claim
ORPHAN_ACTIVE    a job in ``active`` past its lease deadline by more than the recovery
                 bound, while a healthy worker ran stalled recovery all along
UNSTARTED_CLAIM  a job claimed (in ``active`` under a claim) whose handler did not start
                 within the claim bound
SPURIOUS_STALL   stalled recovery took a job from a worker that was not disrupted (not
                 killed, not frozen a quarter lease or more): a claim or a finish was lost to
                 a fault the engine must survive (one delayed/cut/reset/refused command)
LOST_OUTCOME     an attempt's handler ended but the next thing recorded for the job is
                 not that outcome, or it is still not recorded a lease later while
                 the job sits in ``active`` under that claim
RETENTION        ``completed`` / ``failed`` above the queue's retention count
VANISHED         a job hash disappeared with no removal, clean or retention to explain it
EVENTS           a job's last lifecycle event disagrees with its state
ADMIN            an admin call raised an error although Redis applied it (its event is
                 there)
NOT_DRAINED      (end) jobs left unfinished once faults stopped and workers ran
SHUTDOWN         a worker did not exit within the bound after SIGTERM, or exited
                 with an error (close raised)
TASK_DIED        a worker logged an internal task that died ("Task exception was never
                 retrieved", "Exception in callback")
FALSE_LEASE_LOST a worker warned of a lost lease (or a refused outcome) on a job whose
                 lease was not lost
CANCEL           a cancelled job did not end failed "cancelled by <actor>" at once, or was
                 claimed, retried or completed afterwards in the same life; or a cancel
                 that answered ok recorded no `cancelled` event, or one call cancelled twice
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.model.snapshot import STRUCTURES, Event, Snapshot

WAITING = frozenset({"wait", "prioritized"})
# The states a job may be in after its last lifecycle event.
_AFTER: dict[str, frozenset[str]] = {
    "waiting": WAITING,
    "promoted": WAITING,
    "retried": WAITING,
    "released": WAITING,
    "stalled": WAITING,
    "delayed": WAITING | {"delayed"},  # a claim promotes due jobs without an event
    "active": frozenset({"active"}),
    "completed": frozenset({"completed"}),
    "failed": frozenset({"failed"}),
}
LIFECYCLE = frozenset({*_AFTER, "retrying", "removed", "cancelled"})
FOREIGN = "foreign-"  # ids of jobs the driver writes as another producer would
# Events that start a life of a job id (an add, including a re-add of a removed fixed id).
BIRTH = frozenset({"waiting", "delayed"})


@dataclass(frozen=True, slots=True)
class Violation:
    code: str
    job: str
    detail: str
    at: float  # wall-clock seconds

    def __str__(self) -> str:
        return f"{self.code} job={self.job}: {self.detail}"


@dataclass(slots=True)
class WorkerLife:
    """What the driver did to one worker, as the checks need it (wall-clock seconds)."""

    name: str
    worker_id: str | None = None
    started: float = 0.0
    killed: float | None = None  # SIGKILL (a crash), or SIGTERM not obeyed in time
    closed: float | None = None  # SIGTERM (graceful close asked)
    exited: float | None = None
    stalls: list[tuple[float, float, bool]] = field(default_factory=list)  # (from, to, lossy)

    def alive(self, t: float) -> bool:
        gone = [x for x in (self.killed, self.closed, self.exited) if x is not None]
        return self.worker_id is not None and self.started <= t and (not gone or t < min(gone))

    def stalled_during(self, a: float, b: float, lossy_only: bool) -> bool:
        return any(s < b and e > a and (lossy or not lossy_only) for s, e, lossy in self.stalls)

    def disrupted(self, a: float, b: float, slack: float = 0.5) -> bool:
        """Whether something a perfect engine cannot hide hit this worker in [a, b]: a
        crash (then all of its claims may stall), a freeze of a quarter lease or more."""
        if self.killed is not None and self.killed <= b + slack:
            return True
        return self.stalled_during(a - slack, b + slack, lossy_only=True)


@dataclass(slots=True)
class Limits:
    lease_ms: int
    stalled_interval_ms: int
    keep_completed: int
    keep_failed: int
    claim_bound_ms: int
    recovery_slack_ms: int


@dataclass(slots=True)
class AddRecord:
    uid: str
    entries: int
    ok: bool | None = None  # None: in flight
    ids: list[str] = field(default_factory=list)
    error: str = ""


@dataclass(slots=True)
class AdminRecord:
    actor: str
    op: str
    job: str
    error: str  # "" = returned normally
    semantic: bool  # the error was the engine's answer (not a connection failure)


@dataclass(slots=True)
class _Attempt:
    job: str
    worker_id: str
    claimed_ms: int
    event_index: int  # position of its `active` event in the job's event list
    started: bool = False
    ended: bool | None = None  # True ok, False failed, None not ended (yet)
    checked: bool = False


class Checker:
    """Accumulates what every snapshot and the ledger showed; reports each violation once."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.workers: dict[str, WorkerLife] = {}  # by name
        self.refusals: list[tuple[float, float]] = []  # real OOM / NOREPLICAS windows
        self.adds: dict[str, AddRecord] = {}
        self.admin: list[AdminRecord] = []
        self.events: list[Event] = []
        self.by_job: dict[str, list[Event]] = defaultdict(list)
        self.cursor = "0"
        self.origin: dict[str, set[str]] = defaultdict(set)  # "uid/i" -> job ids
        self.opts: dict[str, dict[str, Any]] = {}
        self.last: Snapshot | None = None
        self.attempts: dict[tuple[str, int], _Attempt] = {}  # (job, claimed ms)
        self.attempts_of: dict[str, list[_Attempt]] = defaultdict(list)
        # `failed` events of jobs cancelled while running: cancel_job keeps such a job in
        # `failed` even with removeOnFail: true (its worker's renewal reads the hash).
        self.kept_failures: set[str] = set()
        self.ledger_worker: dict[tuple[str, int], str] = {}  # (job, pon) -> worker name
        self.ledger_starts: dict[tuple[str, int], int] = defaultdict(int)
        self.ledger_ends: dict[tuple[str, int], tuple[bool, float]] = {}
        self.violations: list[Violation] = []
        self._reported: set[tuple[str, str, str]] = set()
        self._admin_checked = 0

    # -- helpers ----------------------------------------------------------------

    def flag(self, code: str, job: str, detail: str, at: float, key: str = "") -> None:
        if (code, job, key) in self._reported:
            return
        self._reported.add((code, job, key))
        self.violations.append(Violation(code, job, detail, at))

    def worker_by_id(self, worker_id: str) -> WorkerLife | None:
        return next((w for w in self.workers.values() if w.worker_id == worker_id), None)

    def _attempt_for(self, job: str, pon: int) -> _Attempt | None:
        """The claim a handler ran for: the ledger's (job, processed-on) and worker, matched
        to an `active` event of that worker. The event's id is Redis's clock at the XADD,
        which may come a little after the script's TIME (a descheduled server), never
        before it: the nearest event at or after ``pon`` is the claim, one up to 2 ms
        before only if none is after (a job re-claimed 2 ms later has both)."""
        name = self.ledger_worker.get((job, pon))
        life = self.workers.get(name or "")
        best: tuple[bool, int] | None = None
        found: _Attempt | None = None
        for att in self.attempts_of.get(job, ()):
            if life is not None and att.worker_id != life.worker_id:
                continue
            lag = att.claimed_ms - pon
            rank = (lag < 0, abs(lag))
            if -2 <= lag <= 2000 and (best is None or rank < best):
                best, found = rank, att
        return found

    def healthy_throughout(self, a: float, b: float) -> bool:
        """One worker alive and never frozen over [a, b], and no real refusal in it: stalled
        recovery had every chance to run."""
        if any(s < b and e > a for s, e in self.refusals):
            return False
        return any(
            w.alive(a) and w.alive(b) and not w.stalled_during(a, b, lossy_only=False)
            for w in self.workers.values()
        )

    # -- feeding ----------------------------------------------------------------

    def feed_ledger(self, entries: list[dict[str, Any]]) -> None:
        for e in entries:
            if e.get("p") is not None:
                self.origin[f"{e['p']}/{e['i']}"].add(str(e["job"]))
            key = (str(e["job"]), int(e["pon"] or 0))
            self.ledger_worker[key] = str(e.get("w", ""))
            if e["ev"] == "start":
                self.ledger_starts[key] += 1
            else:
                self.ledger_ends[key] = (bool(e.get("ok")), float(e["t"]))

    def _feed_events(self, snap: Snapshot) -> None:
        for ev in snap.events:
            self.events.append(ev)
            self.cursor = ev.id
            job = ev.job
            if job is None or ev.name not in LIFECYCLE:
                continue
            life = self.by_job[job]
            after = life[-1] if life else None
            if (
                ev.name == "failed"
                and after is not None
                and after.name == "cancelled"
                and after.fields.get("prev") == "active"
            ):
                self.kept_failures.add(ev.id)
            life.append(ev)
            if ev.name == "active":
                att = _Attempt(job, ev.fields.get("worker", ""), ev.ms, len(self.by_job[job]) - 1)
                self.attempts[(job, ev.ms)] = att
                self.attempts_of[job].append(att)

    # -- the checks -----------------------------------------------------------------

    def check(self, snap: Snapshot, ledger: list[dict[str, Any]], now: float) -> None:
        self._feed_events(snap)
        self.feed_ledger(ledger)
        for job_id in snap.jobs:
            data = snap.data(job_id)
            if isinstance(data, dict) and "p" in data:
                self.origin[f"{data['p']}/{data.get('i')}"].add(job_id)
            self.opts[job_id] = snap.opts(job_id)
        self._states(snap, now)
        self._adds(now)
        self._lives(now)
        self._runs(snap, now)
        self._retention(snap, now)
        self._events_agree(snap, now)
        self._vanished(snap, now)
        self._admin(now)
        self._cancels(now)
        self.last = snap

    def _states(self, snap: Snapshot, now: float) -> None:
        for job_id in snap.jobs:
            states = snap.states(job_id)
            if len(states) != 1:
                self.flag("STATE", job_id, f"in {states or 'no state'}", now, ",".join(states))
        for structure in STRUCTURES:
            for job_id in set(snap.members[structure]):
                if job_id not in snap.jobs:
                    self.flag("STATE", job_id, f"in {structure} without a job hash", now, structure)
        for job_id in set(snap.members["wait"]):
            if snap.members["wait"].count(job_id) > 1:
                self.flag("STATE", job_id, "twice in the wait list", now, "dup")

    def _adds(self, now: float) -> None:
        for origin, ids in self.origin.items():
            if len(ids) > 1:
                uid = origin.split("/")[0]
                rec = self.adds.get(uid)
                how = f"add call {uid} ({'ok' if rec and rec.ok else rec.error if rec else '?'})"
                self.flag("ADD_DUP", ",".join(sorted(ids)), f"entry {origin} of {how}", now)

    def _lives(self, now: float) -> None:
        """One life of a job id runs from its add to its finish: no second finish in it."""
        for job_id, events in self.by_job.items():
            finished: str | None = None
            for ev in events:
                if ev.name in BIRTH or ev.name == "retried":
                    finished = None
                elif ev.name in ("completed", "failed"):
                    if finished is not None:
                        self.flag(
                            "DOUBLE_FINISH",
                            job_id,
                            f"{ev.name} at {ev.id} after {finished} in the same life",
                            now,
                            ev.id,
                        )
                    finished = f"{ev.name} {ev.id}"

    def _runs(self, snap: Snapshot, now: float) -> None:
        lim = self.limits
        for key, n in self.ledger_starts.items():
            if n > 1:
                self.flag("DOUBLE_RUN", key[0], f"handler ran {n} times for claim {key[1]}", now)
        for (job, pon), (ok, _) in list(self.ledger_ends.items()):
            att = self._attempt_for(job, pon)
            if att is not None:
                att.ended = ok
        for job, pon in list(self.ledger_starts):
            att = self._attempt_for(job, pon)
            if att is not None:
                att.started = True
        # Claims not started in time, orphans in `active`.
        for job_id, deadline in snap.scores["active"].items():
            h = snap.jobs.get(job_id, {})
            pon = int(h.get("pon", 0) or 0)
            started = self.ledger_starts.get((job_id, pon), 0) > 0
            if pon and not started and snap.now_ms - pon > lim.claim_bound_ms:
                holder = h.get("tok", "?")
                self.flag(
                    "UNSTARTED_CLAIM",
                    job_id,
                    f"claimed {snap.now_ms - pon} ms ago by {holder}, handler never started "
                    f"(bound {lim.claim_bound_ms} ms)",
                    now,
                    str(pon),
                )
            end = self.ledger_ends.get((job_id, pon))
            life = self.workers.get(self.ledger_worker.get((job_id, pon), ""))
            outcome_bound = lim.lease_ms + lim.recovery_slack_ms
            if (
                end is not None
                and now - end[1] > outcome_bound / 1000
                and life is not None
                and not life.disrupted(end[1], now)
                and not life.stalled_during(end[1], now, lossy_only=False)
                and not any(s < now and e > end[1] for s, e in self.refusals)
            ):
                self.flag(
                    "LOST_OUTCOME",
                    job_id,
                    f"handler of {life.name}'s claim at {pon} "
                    f"{'succeeded' if end[0] else 'failed'} {now - end[1]:.1f} s ago; the job is "
                    f"still active under that claim (bound {outcome_bound} ms)",
                    now,
                    f"stuck{pon}",
                )
            overdue = snap.now_ms - deadline
            bound = 2 * lim.stalled_interval_ms + lim.recovery_slack_ms
            if overdue > bound and self.healthy_throughout(deadline / 1000, now - bound / 1000):
                self.flag(
                    "ORPHAN_ACTIVE",
                    job_id,
                    f"lease deadline passed {overdue} ms ago, not recovered (holder "
                    f"{h.get('tok', '?')})",
                    now,
                    str(int(deadline)),
                )
        # What followed each attempt.
        for att in self.attempts.values():
            if att.checked:
                continue
            events = self.by_job[att.job]
            nxt = next(
                (e for e in events[att.event_index + 1 :] if e.name != "progress"),
                None,
            )
            if nxt is None:
                continue
            att.checked = True
            life = self.worker_by_id(att.worker_id)
            disrupted = life is None or life.disrupted(att.claimed_ms / 1000, nxt.ms / 1000)
            holder = life.name if life else att.worker_id
            if nxt.name == "stalled":
                if not disrupted:
                    ran = {True: "succeeded", False: "failed", None: "had not ended"}[att.ended]
                    if not att.started:
                        ran = "never started"
                    self.flag(
                        "SPURIOUS_STALL",
                        att.job,
                        f"recovered as stalled at {nxt.id} from {holder} (claimed at "
                        f"{att.claimed_ms}), which was not disrupted; its handler {ran}",
                        now,
                        str(att.claimed_ms),
                    )
                continue
            expected = {True: {"completed"}, False: {"retrying", "failed"}}.get(att.ended)
            if expected is None:
                # A job the worker cannot read fails without its handler (poison job).
                # A cancel, next, ends the attempt whatever the handler is doing.
                poison = nxt.name == "failed" and not att.started
                if nxt.name in ("completed", "retrying", "failed") and not poison:
                    self.flag(
                        "LOST_OUTCOME",
                        att.job,
                        f"{nxt.name} at {nxt.id} for the claim of {holder} at {att.claimed_ms} "
                        "whose handler never ended (the ledger has no end)",
                        now,
                        str(att.claimed_ms),
                    )
                continue
            # A cancel supersedes whatever the handler did (its late finish changes nothing).
            if nxt.name not in expected and nxt.name not in ("released", "cancelled"):
                self.flag(
                    "LOST_OUTCOME",
                    att.job,
                    f"handler of {holder}'s claim at {att.claimed_ms} "
                    f"{'succeeded' if att.ended else 'failed'}, next event: {nxt.name} {nxt.id}",
                    now,
                    str(att.claimed_ms),
                )

    def _retention(self, snap: Snapshot, now: float) -> None:
        lim = self.limits
        for state, keep in (("completed", lim.keep_completed), ("failed", lim.keep_failed)):
            # Foreign jobs carry the engine's default retention, not the queue's: they may
            # sit above the bound until the next job of ours trims the set.
            # A job cancelled while running with removeOnFail: true is kept beyond the
            # count (see kept_failures) until a later failure's retention trims it.
            n = sum(
                1
                for j in snap.members[state]
                if not j.startswith(FOREIGN) and not self._kept_beyond(j, state)
            )
            if n > keep:
                self.flag(
                    "RETENTION", f"({state})", f"{n} {state} jobs kept, bound {keep}", now, str(n)
                )

    def _events_agree(self, snap: Snapshot, now: float) -> None:
        for job_id in snap.jobs:
            states = snap.states(job_id)
            life = self.by_job.get(job_id, [])
            if not life:
                self.flag("EVENTS", job_id, f"in {states} with no lifecycle event", now, "none")
                continue
            last = life[-1]
            if last.name == "removed":
                self.flag("EVENTS", job_id, f"in {states} after a 'removed' event", now, last.id)
                continue
            allowed = _AFTER.get(last.name)
            if last.name == "retrying":
                allowed = WAITING | ({"delayed"} if int(last.fields.get("delay", 0)) > 0 else set())
            if allowed is not None and len(states) == 1 and states[0] not in allowed:
                self.flag(
                    "EVENTS",
                    job_id,
                    f"in {states[0]} but its last event is {last.name} ({last.id})",
                    now,
                    last.id + states[0],
                )

    def _kept_beyond(self, job_id: str, state: str) -> bool:
        life = self.by_job.get(job_id)
        return (
            state == "failed"
            and bool(life)
            and life[-1].id in self.kept_failures
            and not self._keeps(job_id, "removeOnFail")
        )

    def _keeps(self, job_id: str, option: str) -> bool:
        return self.opts.get(job_id, {}).get(option) is not True

    def _vanished(self, snap: Snapshot, now: float) -> None:
        if self.last is None:
            return
        for job_id in self.last.jobs:
            if job_id in snap.jobs:
                continue
            life = self.by_job.get(job_id, [])
            last = life[-1] if life else None
            if last is None:
                self.flag("VANISHED", job_id, "gone, and it never had an event", now)
                continue
            if last.name == "removed":
                continue
            if last.name in ("completed", "failed"):
                option = "removeOnComplete" if last.name == "completed" else "removeOnFail"
                keep = (
                    self.limits.keep_completed
                    if last.name == "completed"
                    else self.limits.keep_failed
                )
                if not self._keeps(job_id, option):
                    continue  # its own removal
                cleaned = any(
                    e.name == "cleaned" and e.fields.get("state") == last.name and e.ms >= last.ms
                    for e in self.events
                )
                # Not older: a finished set is ordered by finish ms, ties by id, so a job
                # finished in the same ms as this one may outlast it.
                newer = sum(
                    1
                    for e in self.events
                    if e.name == last.name
                    and e.ms >= last.ms
                    and e.id != last.id
                    and (self._keeps(e.job or "", option) or e.id in self.kept_failures)
                )
                if cleaned or newer >= keep:
                    continue
                self.flag(
                    "VANISHED",
                    job_id,
                    f"{last.name} at {last.id}, then deleted: no clean, only {newer} newer "
                    f"{last.name} jobs kept (retention {keep})",
                    now,
                )
                continue
            self.flag("VANISHED", job_id, f"gone while {last.name} ({last.id})", now)

    def _cancels(self, now: float) -> None:
        """A cancel fails its job in the same step, for good: the job's next lifecycle event
        is `failed` with the cancel's reason, and nothing of that life follows (no claim,
        retry or completion) until an operator's retry or a re-add starts a new one."""
        for job_id, events in self.by_job.items():
            for i, ev in enumerate(events):
                if ev.name != "cancelled":
                    continue
                by = ev.fields.get("by", "")
                reason = f"cancelled by {by}" if by else "cancelled"
                after = events[i + 1 :]
                if not after:
                    continue  # its `failed` is in the next batch of the stream
                first = after[0]
                if first.name != "failed" or first.fields.get("failedReason") != reason:
                    self.flag(
                        "CANCEL",
                        job_id,
                        f"cancelled at {ev.id}, then {first.name} "
                        f"{first.fields.get('failedReason', '')!r} instead of failed {reason!r}",
                        now,
                        ev.id,
                    )
                for later in after[1:]:
                    if later.name in BIRTH or later.name in ("retried", "removed"):
                        break
                    if later.name in ("active", "retrying", "completed", "failed"):
                        self.flag(
                            "CANCEL",
                            job_id,
                            f"cancelled at {ev.id}, then {later.name} at {later.id} in the "
                            "same life",
                            now,
                            ev.id + later.id,
                        )
        for rec in self.admin:
            if rec.op != "cancel":
                continue
            mine = [
                e for e in self.events if e.name == "cancelled" and e.fields.get("by") == rec.actor
            ]
            if len(mine) > 1:
                self.flag(
                    "CANCEL", rec.job, f"cancel by {rec.actor} applied {len(mine)} times", now
                )
            if not rec.error and not mine:
                self.flag(
                    "CANCEL", rec.job, f"cancel by {rec.actor} answered ok, no event", now, "none"
                )

    def _admin(self, now: float) -> None:
        for rec in self.admin[self._admin_checked :]:
            if rec.error and rec.semantic:
                applied = [e for e in self.events if e.fields.get("by") == rec.actor]
                if applied:
                    self.flag(
                        "ADMIN",
                        rec.job or rec.op,
                        f"{rec.op} by {rec.actor} raised {rec.error!r} but was applied "
                        f"({applied[0].name} {applied[0].id})",
                        now,
                    )
        self._admin_checked = len(self.admin)

    # -- the end ----------------------------------------------------------------

    def final(self, snap: Snapshot, now: float) -> None:
        """Once drained (or not): every job seen or returned finished or was removed."""
        pending = [j for j in snap.jobs if set(snap.states(j)) & (WAITING | {"active", "delayed"})]
        for job_id in pending:
            self.flag("NOT_DRAINED", job_id, f"still {snap.states(job_id)} after the drain", now)
        known = set(self.by_job)
        for rec in self.adds.values():
            if rec.ok:
                known.update(rec.ids)
        for job_id in sorted(known):
            names = {e.name for e in self.by_job.get(job_id, [])}
            if not names & {"completed", "failed", "removed"} and job_id not in pending:
                self.flag(
                    "ADD_LOST", job_id, f"never finished nor removed (events {sorted(names)})", now
                )

    def check_logs(self, name: str, lines: list[str], now: float) -> None:
        life = self.workers.get(name)
        for line in lines:
            if "Task exception was never retrieved" in line or "Exception in callback" in line:
                self.flag("TASK_DIED", name, line.strip()[:300], now, line[:60])
            m = _LEASE_LOST.search(line) or _REFUSED.search(line)
            if m is None or life is None or life.worker_id is None:
                continue
            at_ms = int(float(line.split(" ", 1)[0]) * 1000)
            job = m.group("job")
            events = self.by_job.get(job, [])
            claims = [
                i
                for i, e in enumerate(events)
                if e.name == "active" and e.fields.get("worker") == life.worker_id and e.ms <= at_ms
            ]
            # The attempt the warning is about: the one whose claim time the line names
            # (its processed-on), else the worker's latest claim that it ran.
            named = self._attempt_for(job, _iso_ms(m.group("claimed")))
            ran = [i for i in claims if self._ran(job, events[i].ms)]
            if named is not None:
                claim = named.event_index
            elif ran or claims:
                claim = (ran or claims)[-1]
            else:
                continue
            first = next((e for e in events[claim + 1 :] if e.name != "progress"), None)
            if first is not None and first.ms <= at_ms + 50 and first.name in _TAKEN:
                continue  # the lease was lost indeed
            what = f"{first.name} {first.id}" if first is not None else "nothing"
            self.flag(
                "FALSE_LEASE_LOST",
                job,
                f"{name} logged {line.split(' ', 3)[-1].strip()[:120]!r} about its claim at "
                f"{events[claim].ms}, but the lease held: the next event was {what}",
                now,
                str(at_ms),
            )

    def _ran(self, job: str, claimed_ms: int) -> bool:
        att = self.attempts.get((job, claimed_ms))
        return att is not None and att.started


_TAKEN = frozenset({"stalled", "removed", "released", "cancelled"})
_CLAIMED = r"its attempt claimed at (?P<claimed>\S+?)[);]"
_LEASE_LOST = re.compile(rf"Lease lost on job (?P<job>\S+) of queue \S+ \({_CLAIMED}")
_REFUSED = re.compile(
    rf"Job (?P<job>\S+) of queue \S+: (completion|failure) refused, lease lost \({_CLAIMED}"
)


def _iso_ms(text: str) -> int:
    """The ms of an engine log's ``2026-12-02T01:42:55.684Z``."""
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)

"""The chaos harness: engine instances as processes, a producer, a supervisor, a lease
watcher, and the ledger arithmetic that turns a run into one line of figures.

Definitions used in every figure line:

- **acked**: job adds that returned success to the producer (with WAIT: acknowledged by
  a replica too). Adds that failed are retried with the same fixed id until acked.
- **lost**: acked jobs that never ran, once faults are healed and the queues drained.
- **re-runs**: extra completed runs of a job whose first run was recorded (at-least-once
  cost: a worker died or lost Redis after the handler, before the finish reached Redis).
- **redeliveries**: extra handler starts (a worker died or stalled mid-job and the job
  was recovered and started again); includes the re-runs.
- **ticks fired/expected**: distinct ticks run vs. ticks due between the first tick and
  the end of the run (schedules use misfire "all", so an outage is caught up, not lost).
- **dup ticks**: ticks whose id was *created* more than once (two job hashes with
  different creation times for one ``<schedule>:<tick>``): a real double fire, not a
  re-run of one job.
- **takeover**: from a leader's SIGKILL / SIGSTOP / isolation to the lease passing to
  another instance, polled every 20 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from engine import QueueManager
from engine.connection import RedisSettings
from engine.tasks import stop_task

ROOT = Path(__file__).resolve().parents[2]
FIGURES_FILE = Path(os.environ.get("CHAOS_FIGURES", "/tmp/engine-chaos-figures.txt"))
LONG = os.environ.get("CHAOS_LONG") == "1"

LEASE = {"ttl_ms": 1500, "renew_interval_ms": 400, "margin_ms": 300}


def now_ms() -> int:
    return int(time.time() * 1000)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Figures:
    scenario: str
    acked: int = 0
    lost: int = 0
    reruns: int = 0
    redeliveries: int = 0
    ticks_fired: int = 0
    ticks_expected: int = 0
    dup_ticks: int = 0
    takeovers_ms: list[float] = field(default_factory=list)
    extra: str = ""  # the scenario's own figures
    diagnosis: str = ""  # what compute() found wrong: missing ticks, unacked adds

    def line(self) -> str:
        t = self.takeovers_ms
        takeover = (
            f"takeover p50={pct(t, 0.5):.0f}ms p99={pct(t, 0.99):.0f}ms (n={len(t)})"
            if t
            else "takeover n/a"
        )
        rate = f" ({100 * self.reruns / self.acked:.1f}%)" if self.acked else ""
        return (
            f"CHAOS {self.scenario}: jobs acked={self.acked} lost={self.lost} "
            f"re-runs={self.reruns}{rate} redeliveries={self.redeliveries} | "
            f"ticks {self.ticks_fired}/{self.ticks_expected} "
            f"dup_ticks={self.dup_ticks} | {takeover}"
            + (f" | {self.extra}" if self.extra else "")
            + (f" |{self.diagnosis}" if self.diagnosis else "")
        )

    def report(self) -> None:
        line = self.line()
        print("\n" + line, flush=True)
        with contextlib.suppress(OSError), FIGURES_FILE.open("a") as fh:
            fh.write(line + "\n")


@dataclass
class Instance:
    index: int
    url: str
    process: asyncio.subprocess.Process | None = None
    stopped: bool = False  # SIGSTOPped

    @property
    def name(self) -> str:
        return f"c{self.index}"


class Harness:
    """Runs ``instances`` engine processes on ``url`` for ``queues``."""

    def __init__(
        self,
        scenario: str,
        url: str,
        ledger_url: str,
        prefix: str,
        *,
        queues: tuple[str, ...] = ("q",),
        instances: int = 3,
        every_ms: int = 250,
        lease: dict[str, int] | None = None,
        instance_urls: dict[int, str] | None = None,
        runner: dict[str, Any] | None = None,
        producer: RedisSettings | None = None,
        job_opts: dict[str, Any] | None = None,
    ) -> None:
        self.job_opts = job_opts or {}
        self.scenario = scenario
        self.url = url
        self.ledger_url = ledger_url
        self.prefix = prefix
        self.queues = queues
        self.every_ms = every_ms
        self._tick_end: int | None = None
        self.lease = lease or LEASE
        self.runner = runner or {}
        self.instances = [Instance(i, (instance_urls or {}).get(i, url)) for i in range(instances)]
        self.ledger = aioredis.Redis.from_url(ledger_url, decode_responses=True)
        settings = producer or RedisSettings(
            url=url, socket_timeout_s=0.5, connect_timeout_s=0.5, retries=1
        )
        self.producer = QueueManager(prefix=prefix, settings=settings)
        self.acked: dict[str, set[str]] = {q: set() for q in queues}
        self.add_failures = 0
        self.add_errors: Counter[str] = Counter()
        self.unacked = 0  # adds abandoned after 30 s of errors (reported)
        self.lease_changes: list[tuple[float, str]] = []  # (monotonic, holder)
        self.disruptions: list[float] = []  # monotonic times of leader faults
        self.figures = Figures(scenario)
        self._tasks: list[asyncio.Task[Any]] = []
        self._supervise = True
        self.started_ms = now_ms()

    # -- processes ---------------------------------------------------------------

    def _config(self, inst: Instance) -> str:
        cfg = {
            "url": inst.url,
            "prefix": self.prefix,
            "queues": list(self.queues),
            "every_ms": self.every_ms,
            "lease": self.lease,
            "ledger_url": self.ledger_url,
            "instance": inst.name,
            **self.runner,
        }
        return json.dumps(cfg)

    async def spawn(self, inst: Instance) -> None:
        # Each instance's warnings go to a log of its own for diagnosis ($CHAOS_LOG_DIR).
        log_dir = Path(os.environ.get("CHAOS_LOG_DIR") or tempfile.gettempdir())
        with (log_dir / f"chaos-{self.scenario.split('/')[0]}-{inst.name}.log").open("ab") as log:
            inst.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.chaos.runner",
                self._config(inst),
                cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        inst.stopped = False

    async def start(self) -> Harness:
        # `kill -USR1 <pytest pid>` prints every asyncio task's stack (diagnosing a hang).
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
        for inst in self.instances:
            await self.spawn(inst)
        self._tasks.append(asyncio.create_task(self._supervisor()))
        self._tasks.append(asyncio.create_task(self._watch_lease()))
        return self

    def alive(self, inst: Instance) -> bool:
        return inst.process is not None and inst.process.returncode is None

    async def _supervisor(self) -> None:
        """Restart dead instances after a short delay, like a process manager."""
        while True:
            await asyncio.sleep(0.3)
            if not self._supervise:
                continue
            for inst in self.instances:
                if inst.process is not None and inst.process.returncode is not None:
                    await self.spawn(inst)

    def signal(self, inst: Instance, sig: int) -> None:
        if self.alive(inst):
            assert inst.process is not None
            os.kill(inst.process.pid, sig)
            inst.stopped = sig == signal.SIGSTOP

    async def kill(self, inst: Instance) -> None:
        self.signal(inst, signal.SIGCONT)
        self.signal(inst, signal.SIGKILL)
        assert inst.process is not None
        await inst.process.wait()

    # -- leader ------------------------------------------------------------------

    async def _holder(self, queue: str) -> str | None:
        """The lease token, ``<instance>/<unique>``: a restarted instance has a new one."""
        token: str | None = await self.producer.client.get(self.producer.store.keys(queue).lease)
        return token

    async def _watch_lease(self) -> None:
        last: str | None = None
        while True:
            try:
                holder = await self._holder(self.queues[0])
            except Exception:
                holder = last
            if holder != last:
                self.lease_changes.append((time.monotonic(), holder or ""))
                last = holder
            await asyncio.sleep(0.02)

    async def leader(self, timeout_s: float = 10.0) -> Instance:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                token = await self._holder(self.queues[0])
                holder = token.split("/", 1)[0] if token else None
                for inst in self.instances:
                    if inst.name == holder and self.alive(inst) and not inst.stopped:
                        return inst
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.scenario}: no live leader within {timeout_s}s")

    def mark_disruption(self) -> None:
        self.disruptions.append(time.monotonic())

    def takeovers_ms(self) -> list[float]:
        """For each leader fault: time until a *different, non-empty* holder appeared."""
        out = []
        for t0 in self.disruptions:
            before = [h for t, h in self.lease_changes if t <= t0]
            old = before[-1] if before else ""
            for t, holder in self.lease_changes:
                if t > t0 and holder and holder != old:
                    out.append((t - t0) * 1000)
                    break
        return out

    # -- producer ----------------------------------------------------------------

    async def produce(
        self, count: int, until: asyncio.Event, batch: int = 10, pause_s: float = 0.04
    ) -> None:
        """Add jobs with fixed ids in batches, at least ``count`` per queue and on until
        ``until`` is set (so load spans every fault). A failed batch is retried with the
        same ids until acknowledged (an add of an existing id is a no-op)."""
        start = 0
        while start < count or not until.is_set():
            for queue in self.queues:
                ids = [f"j{n}" for n in range(start, start + batch)]
                await self._add_until_acked(queue, ids)
            start += batch
            await asyncio.sleep(pause_s)

    async def _add_until_acked(self, queue: str, ids: list[str]) -> None:
        q = self.producer.create_queue(queue)
        give_up = time.monotonic() + 30
        while True:
            try:
                jobs = [{"data": i, "opts": {**self.job_opts, "jobId": i}} for i in ids]
                await asyncio.wait_for(q.add_bulk(jobs), 10)  # a hung call is a failure too
            except Exception as exc:
                self.add_failures += 1
                self.add_errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                if time.monotonic() > give_up:  # never hang the suite: report instead
                    self.unacked += len(ids)
                    return
                await asyncio.sleep(0.05)
                continue
            self.acked[queue].update(ids)
            return

    # -- end of run ----------------------------------------------------------------

    async def runs(self, queue: str) -> dict[str, int]:
        raw = await self.ledger.hgetall(f"{self.prefix}:runs:{queue}")
        return {k: int(v) for k, v in raw.items()}

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every tick due up to a second ago and every acked job has run, or
        Redis holds no unfinished job for a second (what has not run by then is lost)."""
        deadline = time.monotonic() + timeout_s
        idle = 0
        while time.monotonic() < deadline:
            all_ran = ticks_ok = True
            # The tick window that compute() checks ends where this pass saw ticks run up
            # to: a later "now" would count ticks a loaded machine has not run yet.
            tick_end = now_ms() - 2 * self.every_ms - 500
            for queue in self.queues:
                runs = await self.runs(queue)
                if not self.acked[queue] <= runs.keys():
                    all_ran = False
                if self.every_ms and self._ticks_missing(runs, tick_end):
                    ticks_ok = False
            if ticks_ok and all_ran:
                self._tick_end = tick_end
                return
            idle = idle + 1 if await self._nothing_pending() else 0
            if idle >= 10:
                self._tick_end = tick_end
                return
            await asyncio.sleep(0.1)

    def _ticks_missing(self, runs: dict[str, int], end: int) -> list[int]:
        """The ticks due from the first one run up to ``end`` that have not run (a tick
        run late by a recovered worker still counts; one never run is missing)."""
        ticks = {int(k.split(":")[1]) for k in runs if k.startswith("tick:")}
        if not ticks:
            return [end]
        return sorted(set(range(min(ticks), end + 1, self.every_ms)) - ticks)

    async def _nothing_pending(self) -> bool:
        try:
            for queue in self.queues:
                st = await self.producer.create_queue(queue).get_stats()
                if st.waiting + st.paused + st.active + st.delayed:
                    return False
        except Exception:
            return False
        return True

    async def compute(self) -> Figures:
        f = self.figures
        end = self._tick_end if self._tick_end is not None else now_ms() - 2 * self.every_ms - 500
        for queue in self.queues:
            runs = await self.runs(queue)
            jobs = {k: v for k, v in runs.items() if not k.startswith("tick:")}
            f.acked += len(self.acked[queue])
            f.lost += len(self.acked[queue] - jobs.keys())
            f.reruns += sum(v - 1 for v in jobs.values())
            starts = await self.ledger.hgetall(f"{self.prefix}:starts:{queue}")
            f.redeliveries += sum(
                int(v) - 1 for k, v in starts.items() if not k.startswith("tick:")
            )
            if not self.every_ms:
                continue
            ticks = sorted(int(k.split(":")[1]) for k in runs if k.startswith("tick:"))
            if not ticks:
                continue
            in_window = [t for t in ticks if t <= end]
            f.ticks_fired += len(set(in_window))
            f.ticks_expected += (end - ticks[0]) // self.every_ms + 1 if end >= ticks[0] else 0
            if missing := self._ticks_missing(runs, end):
                f.diagnosis += " " + await self._describe_missing(queue, missing)
            async with self.ledger.pipeline(transaction=False) as pipe:
                for t in ticks:
                    pipe.scard(f"{self.prefix}:fires:{queue}:tick:{t}")
                counts = await pipe.execute()
            f.dup_ticks += sum(1 for c in counts if int(c) > 1)
        f.takeovers_ms = self.takeovers_ms()
        if self.unacked:
            f.diagnosis += f" UNACKED={self.unacked} errors={dict(self.add_errors.most_common(3))}"
        return f

    async def _describe_missing(self, queue: str, missing: list[int]) -> str:
        """Where the first missing ticks are: their job's state, attempts and failure."""
        parts = []
        for t in missing[:6]:
            try:
                job = await self.producer.get_job(queue, f"tick:{t}")
            except Exception as exc:  # a report, never a second failure
                parts.append(f"{t}=?{type(exc).__name__}")
                continue
            if job is None:
                parts.append(f"{t}=absent")
            else:
                parts.append(f"{t}={job.state}/a{job.attempts_made}/{job.failed_reason or ''}")
        return f"MISSING {queue} x{len(missing)}: " + ", ".join(parts)

    async def close(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
        self._supervise = False
        # stop_task, not cancel(): on Python 3.11 redis-py can swallow a cancel (see
        # engine/tasks.py), and a lease watcher that ran on hung the suite at close.
        await asyncio.gather(*(stop_task(t) for t in self._tasks))
        for inst in self.instances:
            if self.alive(inst):
                self.signal(inst, signal.SIGCONT)
                self.signal(inst, signal.SIGTERM)
        for inst in self.instances:
            if inst.process is None:
                continue
            try:
                await asyncio.wait_for(inst.process.wait(), 10)
            except TimeoutError:
                await self.kill(inst)
        await self.producer.close_all()
        await self.ledger.aclose()


def dump_tasks() -> None:
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


def assert_invariants(f: Figures, *, ticks: bool = True) -> None:
    """The suite's invariants: nothing acknowledged is lost, no tick is created twice,
    and (misfire "all") every due tick ran."""
    assert f.lost == 0, f.line()
    if ticks:
        assert f.dup_ticks == 0, f.line()
        assert f.ticks_fired == f.ticks_expected, f.line()


__all__ = ["LEASE", "Figures", "Harness", "assert_invariants", "dump_tasks"]

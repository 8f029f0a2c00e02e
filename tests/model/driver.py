"""The seeded driver of the model-based test: producers, workers (each a process behind its
own fault proxy), admin calls and faults in random order against a real redis-server, with
every invariant of invariants.py checked after every step.

Decisions (which step, its parameters, which fault where) come from ``random.Random(seed)``
only, so a seed replays the same sequence of steps; timing (what the workers are doing when
a fault lands) is the machine's. A failing run prints its seed and the replay command.

    .venv/bin/python -m tests.model --seed 17 --steps 200     # one run, its report
    make fuzz FUZZ_SEEDS="1 2 3" FUZZ_STEPS=300                # the long run

Environment knobs (for runs against a branch that adds options): ``MODEL_WORKER_OPTIONS``
(JSON merged into every worker's WorkerOptions), ``MODEL_CLAIM_BOUND_MS`` (how long a claimed
job may wait for its handler to start).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from engine import EngineError, QueueManager
from engine.connection import RedisSettings
from tests.faults.errors import REDIS_ERRORS
from tests.faults.proxy import Fault, FaultProxy, Match
from tests.model import snapshot
from tests.model.invariants import (
    FOREIGN,
    AddRecord,
    AdminRecord,
    Checker,
    Limits,
    Violation,
    WorkerLife,
)
from tests.redis_servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "model"
MAX_EVENTS = 1_000_000  # never trimmed within a run: the checks read every event
# What a worker's commands may meet (one command each time; the client's resend passes).
WORKER_TARGETS: tuple[Match, ...] = (
    Match(script="move_to_active"),
    Match(script="complete_job"),
    Match(script="fail_job"),
    Match(script="extend_leases"),
    Match(script="recover_stalled"),
    Match(script="release_jobs"),
    Match(command="BZPOPMIN"),
    Match(command="EVALSHA"),
)
ADMIN_TARGETS: tuple[Match, ...] = (
    Match(script="retry_job"),
    Match(script="remove_job"),
    Match(script="promote_job"),
    Match(script="pause_queue"),
    Match(script="clean_jobs"),
    Match(script="cancel_job"),
    Match(command="EVALSHA"),
)
REFUSALS = tuple(REDIS_ERRORS)
# Real refusals: (code, the config that makes Redis answer it while set to 1).
BLIPS = (("OOM", "maxmemory"), ("NOREPLICAS", "min-replicas-to-write"))


@dataclass(slots=True)
class ModelConfig:
    steps: int = 60
    lease_ms: int = 4000
    stalled_interval_ms: int = 500
    block_timeout_s: float = 1.0
    socket_timeout_s: float = 0.5
    connect_timeout_s: float = 0.5
    concurrency: tuple[int, int] = (1, 4)
    max_workers: int = 3
    start_workers: int = 2
    keep_completed: int = 15
    keep_failed: int = 8
    # A claimed job that never starts (its worker froze or lost the claim's reply) is back in
    # play once its claim deadline passes (WorkerOptions.claim_timeout_ms): the bound allows
    # that deadline plus the time for another worker's claim to notice, on a loaded machine.
    claim_timeout_ms: int = 1500
    claim_bound_ms: int = int(os.environ.get("MODEL_CLAIM_BOUND_MS", "4500"))
    recovery_slack_ms: int = 3000
    drain_timeout_s: float = 45.0
    shutdown_bound_s: float = 20.0
    random_rate: float = 0.0  # background random faults on every worker's commands
    poison: bool = True  # foreign (Bull-shaped) jobs the engine cannot read
    # Calm: no fault, kill, freeze, blip, foreign job nor `removeOn*: true` (whose Bull
    # meaning the engine breaks today): the baseline every invariant must hold on.
    calm: bool = False
    stop_on_violation: bool = False
    worker_options: dict[str, Any] = field(
        default_factory=lambda: json.loads(os.environ.get("MODEL_WORKER_OPTIONS", "{}"))
    )

    @property
    def delay_s(self) -> float:
        """A reply held past the client's socket timeout (it times out and resends)."""
        return self.socket_timeout_s * 2 + 0.2


@dataclass(slots=True)
class _Worker:
    life: WorkerLife
    proxy: FaultProxy
    proc: asyncio.subprocess.Process
    log_path: Path
    concurrency: int


@dataclass(slots=True)
class Report:
    seed: int
    config: ModelConfig
    steps: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    stats: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations and not self.error

    def replay(self) -> str:
        rate = self.config.random_rate
        extra = f" --random-rate {rate:g}" if rate else ""
        return (
            f".venv/bin/python -m tests.model --seed {self.seed} --steps {self.config.steps}{extra}"
        )

    def summary(self) -> str:
        kinds = Counter(v.code for v in self.violations)
        head = (
            f"model run seed={self.seed} steps={self.stats.get('steps', 0)}/{self.config.steps}: "
            f"{'OK' if self.ok else 'FAILED'}; violations {dict(kinds) or 0}; "
            f"faults {dict(self.faults)}; {self.stats}"
        )
        return head

    def format(self, max_steps: int = 400, per_code: int = 6) -> str:
        lines = [self.summary(), f"replay: {self.replay()}"]
        if self.error:
            lines.append(f"driver error: {self.error}")
        by_code: dict[str, list[Violation]] = {}
        for v in self.violations:
            by_code.setdefault(v.code, []).append(v)
        for code, found in by_code.items():
            for v in found[:per_code]:
                lines.append(f"  VIOLATION {v}")
            if len(found) > per_code:
                lines.append(f"  ... and {len(found) - per_code} more {code}")
        lines.append("steps:")
        lines += [f"  {s}" for s in self.steps[:max_steps]]
        return "\n".join(lines)


class ModelRun:
    """One seeded run. ``await ModelRun(seed, config).run()`` returns its :class:`Report`."""

    def __init__(self, seed: int, config: ModelConfig | None = None) -> None:
        self.seed = seed
        self.cfg = config or ModelConfig()
        self.rng = random.Random(seed)
        self.report = Report(seed, self.cfg)
        self.prefix = f"m{uuid.uuid4().hex[:8]}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"model-{seed}-"))
        c = self.cfg
        self.check = Checker(
            Limits(
                c.lease_ms,
                c.stalled_interval_ms,
                c.keep_completed,
                c.keep_failed,
                c.claim_bound_ms,
                c.recovery_slack_ms,
            )
        )
        self.workers: dict[str, _Worker] = {}
        self._n = 0
        self._ledger_at = 0
        self._paused_steps = 0
        self._background: set[asyncio.Task[Any]] = set()

    # -- plumbing ---------------------------------------------------------------

    def _next(self, tag: str) -> str:
        self._n += 1
        return f"{tag}{self._n}"

    def _note(self, text: str) -> None:
        self.report.steps.append(f"[{len(self.report.steps):3d}] {text}")

    def _settings(self, proxy: FaultProxy) -> RedisSettings:
        c = self.cfg
        return RedisSettings(
            url=proxy.url,
            socket_timeout_s=c.socket_timeout_s,
            connect_timeout_s=c.connect_timeout_s,
            retries=1,
        )

    async def run(self) -> Report:
        started = time.monotonic()
        self.main = RedisServer().start()
        self.ledger_server = RedisServer().start()
        self.observer = aioredis.Redis(port=self.main.port, decode_responses=True)
        self.ledger = aioredis.Redis(port=self.ledger_server.port, decode_responses=True)
        self.ledger_key = f"{self.prefix}:ledger"
        self.producer_proxy = await FaultProxy("127.0.0.1", self.main.port).start()
        self.admin_proxy = await FaultProxy("127.0.0.1", self.main.port).start()
        defaults = {
            "removeOnComplete": self.cfg.keep_completed,
            "removeOnFail": self.cfg.keep_failed,
        }
        self.producer = QueueManager(
            prefix=self.prefix, settings=self._settings(self.producer_proxy), max_events=MAX_EVENTS
        )
        self.admin = QueueManager(
            prefix=self.prefix, settings=self._settings(self.admin_proxy), max_events=MAX_EVENTS
        )
        self.queue = self.producer.create_queue(QUEUE, defaults)
        self.admin_queue = self.admin.create_queue(QUEUE, defaults)
        self.qkeys = self.queue.keys
        try:
            for _ in range(self.cfg.start_workers):
                await self._start_worker()
            await self._observe()
            for n in range(self.cfg.steps):
                self.report.stats["steps"] = n + 1
                await self._step()
                await self._observe()
                if self.cfg.stop_on_violation and self.check.violations:
                    break
            await self._drain()
        except Exception as exc:
            self.report.error = "".join(traceback.format_exception(exc))[-3000:]
        finally:
            with contextlib.suppress(Exception):
                await self._teardown()
            self.report.violations = list(self.check.violations)
            self.report.faults = self._fault_counts()
            self.report.stats["seconds"] = round(time.monotonic() - started, 1)
            if self.report.ok:
                shutil.rmtree(self.workdir, ignore_errors=True)
            else:
                self.report.stats["logs"] = str(self.workdir)
        return self.report

    def _proxies(self) -> list[FaultProxy]:
        return [self.producer_proxy, self.admin_proxy, *(w.proxy for w in self.workers.values())]

    def _fault_counts(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for proxy in self._proxies():
            for rec in proxy.log:
                out[f"{rec.fault.kind}" if rec.fault.kind != "error" else str(rec.fault)] += 1
        out["freeze"] = sum(len(w.life.stalls) for w in self.workers.values())
        out["kill"] = sum(1 for w in self.workers.values() if w.life.killed is not None)
        out["real_refusal"] = len(self.check.refusals)
        return +out

    async def _observe(self) -> None:
        snap = await snapshot.take(self.observer, self.qkeys, self.check.cursor)
        raw = await self.ledger.lrange(self.ledger_key, self._ledger_at, -1)
        self._ledger_at += len(raw)
        self.check.check(snap, [orjson.loads(r) for r in raw], time.time())
        self._snap = snap

    # -- workers ----------------------------------------------------------------

    async def _start_worker(self) -> str:
        name = self._next("w")
        c = self.cfg
        proxy = await FaultProxy("127.0.0.1", self.main.port).start()
        if c.random_rate:
            mix = {"delay": 2, "cut": 2, "reset": 2, **{f"error:{e}": 1 for e in REFUSALS}}
            proxy.randomize(
                self.rng.randrange(2**31),
                c.random_rate,
                mix,
                match=Match(command="EVALSHA"),
                delay_s=c.delay_s,
                cooldown_s=c.socket_timeout_s * 4 + 1,
            )
        concurrency = self.rng.randint(*c.concurrency)
        options = {
            "concurrency": concurrency,
            "lease_ms": c.lease_ms,
            "stalled_interval_ms": c.stalled_interval_ms,
            "block_timeout_s": c.block_timeout_s,
            "reconnect_max_s": 1.0,
            "claim_timeout_ms": c.claim_timeout_ms,
            **c.worker_options,
        }
        cfg = {
            "url": proxy.url,
            "socket_timeout_s": c.socket_timeout_s,
            "connect_timeout_s": c.connect_timeout_s,
            "prefix": self.prefix,
            "queue": QUEUE,
            "max_events": MAX_EVENTS,
            "ledger_port": self.ledger_server.port,
            "ledger_key": self.ledger_key,
            "name": name,
            "worker": options,
        }
        log_path = self.workdir / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.model.worker_main", json.dumps(cfg),
                stdout=asyncio.subprocess.PIPE, stderr=log, env=env, cwd=str(ROOT),
            )  # fmt: skip
        life = WorkerLife(name, started=time.time())
        self.check.workers[name] = life
        self.workers[name] = _Worker(life, proxy, proc, log_path, concurrency)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            life.worker_id = json.loads(line)["ready"]
        except (TimeoutError, ValueError, KeyError):
            self.check.flag("TASK_DIED", name, "worker did not start", time.time())
            life.exited = time.time()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        life.started = time.time()
        self._note(f"start {name} concurrency={concurrency}")
        return name

    def _live(self) -> list[_Worker]:
        now = time.time()
        return [w for w in self.workers.values() if w.life.alive(now)]

    async def _kill(self, w: _Worker) -> None:
        w.life.killed = time.time()
        with contextlib.suppress(ProcessLookupError):
            w.proc.kill()
        await w.proc.wait()
        w.life.exited = time.time()

    async def _close(self, w: _Worker) -> None:
        w.life.closed = time.time()
        with contextlib.suppress(ProcessLookupError):
            w.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(w.proc.wait(), self.cfg.shutdown_bound_s)
        except TimeoutError:
            self.check.flag(
                "SHUTDOWN",
                w.life.name,
                f"still running {self.cfg.shutdown_bound_s:g} s after SIGTERM",
                time.time(),
            )
            await self._kill(w)
            return
        w.life.exited = time.time()
        if w.proc.returncode != 0:
            self.check.flag(
                "SHUTDOWN",
                w.life.name,
                f"exited with code {w.proc.returncode} after SIGTERM (close raised; see its log)",
                time.time(),
            )

    # -- steps ------------------------------------------------------------------

    async def _step(self) -> None:
        steps: list[tuple[float, Callable[[], Awaitable[None]]]] = [
            (10, self._add),
            (3, self._add_many),
            (3, self._add_bulk),
            (2, self._add_fixed),
            (5, self._wait),
            (1.5, self._worker_start),
            (1, self._worker_kill),
            (1.5, self._worker_freeze),
            (0.7, self._worker_close),
            (5, self._worker_fault),
            (2, self._producer_fault),
            (1, self._admin_fault),
            (4, self._admin_call),
            (1.0, self._refusal_blip),
            (0.4 if self.cfg.poison else 0, self._foreign_add),
        ]
        if self.cfg.calm:
            faulty = {
                self._worker_kill,
                self._worker_freeze,
                self._worker_fault,
                self._producer_fault,
                self._admin_fault,
                self._refusal_blip,
                self._foreign_add,
            }
            steps = [(0 if step in faulty else w, step) for w, step in steps]
        total = sum(w for w, _ in steps)
        pick = self.rng.random() * total
        step = steps[-1][1]
        for weight, candidate in steps:
            pick -= weight
            if pick < 0:
                step = candidate
                break
        if self._paused_steps and self._paused_steps >= 4:
            step = self._resume  # a pause lasts a few steps, not the whole run
        await step()

    def _entry(self, uid: str, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        r = self.rng
        attempts = r.choice((1, 1, 2, 3))
        fail = r.choice((0, 0, 0, 0, 1, 2, 4))
        data = {"p": uid, "i": i, "ms": r.choice((0, 5, 20, 50, 150, 400)), "fail": fail}
        opts: dict[str, Any] = {"attempts": attempts}
        if r.random() < 0.4:
            opts["backoff"] = {"type": "fixed", "delay": r.choice((0, 50, 300))}
        if r.random() < 0.2:
            opts["delay"] = r.choice((100, 400, 1500))
        if r.random() < 0.3:
            opts["priority"] = r.randint(1, 3)
        if r.random() < 0.1 and not self.cfg.calm:
            opts["removeOnComplete"] = True
        if r.random() < 0.1 and not self.cfg.calm:
            opts["removeOnFail"] = True
        return data, opts

    async def _guard(self, what: str, call: Awaitable[Any], timeout_s: float = 20.0) -> Any:
        try:
            return await asyncio.wait_for(call, timeout_s)
        except TimeoutError as exc:
            raise RedisError(f"{what} took over {timeout_s:g}s") from exc

    async def _one_add(self, note: str = "add") -> None:
        uid = self._next("a")
        data, opts = self._entry(uid, 0)
        rec = AddRecord(uid, 1)
        self.check.adds[uid] = rec
        try:
            job = await self._guard("add", self.queue.add(data, opts))
            rec.ok, rec.ids = True, [job.id]
            self._note(f"{note} {uid} -> {job.id} {opts}")
        except (RedisError, EngineError, OSError) as exc:
            rec.ok, rec.error = False, f"{type(exc).__name__}: {exc}"
            self._note(f"{note} {uid} raised {rec.error[:100]}")

    async def _add(self) -> None:
        await self._one_add()

    async def _add_many(self) -> None:
        n = self.rng.randint(2, 5)
        await asyncio.gather(*(self._one_add("add(concurrent)") for _ in range(n)))

    async def _add_bulk(self) -> None:
        uid = self._next("b")
        n = self.rng.randint(2, 6)
        entries = [self._entry(uid, i) for i in range(n)]
        rec = AddRecord(uid, n)
        self.check.adds[uid] = rec
        try:
            jobs = await self._guard(
                "add_bulk", self.queue.add_bulk([{"data": d, "opts": o} for d, o in entries])
            )
            rec.ok, rec.ids = True, [j.id for j in jobs]
            self._note(f"add_bulk {uid} x{n} -> {rec.ids}")
        except (RedisError, EngineError, OSError) as exc:
            rec.ok, rec.error = False, f"{type(exc).__name__}: {exc}"
            self._note(f"add_bulk {uid} x{n} raised {rec.error[:100]}")

    async def _add_fixed(self) -> None:
        uid = self._next("f")
        job_id = f"fx{self.rng.randint(0, 7)}"
        data, opts = self._entry(uid, 0)
        opts["jobId"] = job_id
        rec = AddRecord(uid, 1)
        self.check.adds[uid] = rec
        try:
            job = await self._guard("add", self.queue.add(data, opts))
            rec.ok, rec.ids = True, [job.id]
            created = isinstance(job.data, dict) and job.data.get("p") == uid
            self._note(f"add fixed {job_id} by {uid} ({'new' if created else 'existing'})")
        except (RedisError, EngineError, OSError) as exc:
            rec.ok, rec.error = False, f"{type(exc).__name__}: {exc}"
            self._note(f"add fixed {job_id} by {uid} raised {rec.error[:100]}")

    async def _foreign_add(self) -> None:
        """A job written the way another (Bull-compatible, newer) producer would: an option
        this engine does not know, or data that is not JSON. It may fail alone; it may not
        stop a worker."""
        job_id = self._next(FOREIGN)
        poison = self.rng.choice(("option", "data"))
        opts = '{"lifo":true,"keepLogs":5}' if poison == "option" else ""
        data = '{"p": not json' if poison == "data" else '{"ms": 0}'
        try:
            await self._write_foreign(job_id, data, opts)
        except RedisError as exc:  # a real refusal blip: the foreign producer failed
            self._note(f"foreign add {job_id} refused: {exc}")
            return
        self._note(f"foreign add {job_id} ({poison} this engine cannot read)")

    async def _write_foreign(self, job_id: str, data: str, opts: str) -> None:
        k = self.qkeys
        await self.observer.eval(
            """
            local t = redis.call('TIME')
            local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
            redis.call('HSET', KEYS[1], 'data', ARGV[2], 'ts', now)
            if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'opts', ARGV[3]) end
            redis.call('RPUSH', KEYS[2], ARGV[1])
            redis.call('XADD', KEYS[3], '*', 'event', 'waiting', 'jobId', ARGV[1])
            redis.call('ZADD', KEYS[4], 0, 'w')
            return 1
            """,
            4, k.job(job_id), k.wait, k.events, k.marker, job_id, data, opts,
        )  # fmt: skip

    async def _wait(self) -> None:
        seconds = self.rng.choice((0.05, 0.1, 0.3, 0.6, 1.0))
        await asyncio.sleep(seconds)
        self._note(f"wait {seconds}s")

    def _pick(self, items: list[Any]) -> Any:
        """A choice that always draws once, so the draws stay aligned on replay."""
        x = self.rng.random()
        return items[int(x * len(items))] if items else None

    async def _worker_start(self) -> None:
        if len(self._live()) >= self.cfg.max_workers:
            self.rng.random()
            self._note("start: at the maximum, skipped")
            return
        await self._start_worker()

    async def _worker_kill(self) -> None:
        w = self._pick(self._live())
        spare_last = self.rng.random() < 0.5
        if w is None or (len(self._live()) == 1 and spare_last):
            self._note("kill: skipped")
            return
        await self._kill(w)
        self._note(f"kill -9 {w.life.name}")

    async def _worker_freeze(self) -> None:
        w = self._pick(self._live())
        long = self.rng.random() < 0.35
        short = self.rng.uniform(0.2, 0.9)
        if w is None:
            self._note("freeze: no worker")
            return
        seconds = self.cfg.lease_ms / 1000 + 1.0 if long else short
        now = time.time()
        # A freeze of a quarter lease or more may cost a lease (a renewal held, its resend
        # held too, the next one due too late): stalls of its jobs are then expected.
        lossy = seconds * 1000 >= self.cfg.lease_ms / 4
        w.life.stalls.append((now, now + seconds, lossy))
        w.proxy.stall(seconds)
        self._note(f"freeze {w.life.name} {seconds:.2f}s{' (may cost leases)' if lossy else ''}")

    async def _worker_close(self) -> None:
        w = self._pick(self._live())
        if w is None:
            self._note("close: no worker")
            return
        started = time.monotonic()
        await self._close(w)
        self._note(f"close {w.life.name} ({time.monotonic() - started:.1f}s)")

    def _fault(self, targets: tuple[Match, ...], delay_s: float) -> tuple[Match, Fault]:
        match = targets[int(self.rng.random() * len(targets))]
        kind = self.rng.choice(("delay", "cut", "reset", "error", "error", "stall"))
        code = REFUSALS[int(self.rng.random() * len(REFUSALS))]
        fault = {
            "delay": Fault.delay(delay_s),
            "cut": Fault.cut(),
            "reset": Fault.reset(),
            "error": Fault.refuse(code),
            # Shorter than the socket timeout: the call is only slow (a stall past it is
            # a freeze, see _worker_freeze).
            "stall": Fault.stall(self.cfg.socket_timeout_s * 0.6),
        }[kind]
        return match, fault

    def _describe(self, match: Match) -> str:
        return match.script or match.command or "*"

    async def _worker_fault(self) -> None:
        w = self._pick(self._live())
        match, fault = self._fault(WORKER_TARGETS, self.cfg.delay_s)
        if w is None:
            self._note("worker fault: no worker")
            return
        w.proxy.clear_rules()  # one armed fault per worker: its resend always gets through
        w.proxy.add_rule(fault, match)
        self._note(f"arm {fault} on {w.life.name}'s next {self._describe(match)}")

    async def _producer_fault(self) -> None:
        match, fault = self._fault((Match(script="add_job"),), self.cfg.delay_s)
        self.producer_proxy.clear_rules()
        self.producer_proxy.add_rule(fault, match)
        self._note(f"arm {fault} on the producer's next add_job")

    async def _admin_fault(self) -> None:
        match, fault = self._fault(ADMIN_TARGETS, self.cfg.delay_s)
        self.admin_proxy.clear_rules()
        self.admin_proxy.add_rule(fault, match)
        self._note(f"arm {fault} on the admin's next {self._describe(match)}")

    async def _refusal_blip(self) -> None:
        """Real Redis refuses writes for a moment: OOM (``maxmemory 1``) or NOREPLICAS
        (``min-replicas-to-write 1``, no replica), as tests/faults/real.py does."""
        seconds = self.rng.uniform(0.2, 0.6)
        code, setting = self.rng.choice(BLIPS)
        now = time.time()
        self.check.refusals.append((now, now + seconds + 0.1))
        await self.observer.config_set(setting, 1)

        async def heal() -> None:
            await asyncio.sleep(seconds)
            await self.observer.config_set(setting, 0)

        task = asyncio.ensure_future(heal())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        self._note(f"real {code} for {seconds:.2f}s ({setting} 1)")

    async def _resume(self) -> None:
        await self._admin("resume", "", self.admin_queue.resume)

    async def _admin_call(self) -> None:
        op = self.rng.choice(
            ("retry", "retry", "remove", "promote", "pause", "resume", "clean", "cancel", "cancel")
        )
        snap = self._snap
        if op == "retry":
            job = self._pick(sorted(snap.members["failed"]))
            await self._admin(
                op, job or "", lambda actor: self.admin_queue.retry_job(job or "x", actor)
            )
        elif op == "promote":
            job = self._pick(sorted(snap.members["delayed"]))
            await self._admin(
                op, job or "", lambda actor: self.admin_queue.promote_job(job or "x", actor)
            )
        elif op == "remove":
            ids = sorted(j for j in snap.jobs if snap.states(j) != ["active"])
            job = self._pick(ids)
            await self._admin(
                op, job or "", lambda actor: self.admin_queue.remove_job(job or "x", actor)
            )
        elif op == "cancel":
            # Mostly a job that can be cancelled (running ones above all), sometimes one
            # that has finished (refused with its state).
            live = ("active", "active", "wait", "prioritized", "delayed")
            pool = sorted(snap.members[self.rng.choice(live)])
            if not pool or self.rng.random() < 0.15:
                pool = sorted(snap.members[self.rng.choice(("completed", "failed"))])
            job = self._pick(pool)
            await self._admin(
                op, job or "", lambda actor: self.admin_queue.cancel_job(job or "x", actor)
            )
        elif op == "pause":
            await self._admin(op, "", self.admin_queue.pause)
        elif op == "resume":
            await self._admin(op, "", self.admin_queue.resume)
        else:
            state = self.rng.choice(("completed", "failed"))
            grace = self.rng.choice((0, 500, 5000))
            await self._admin(
                f"clean {state} {grace}",
                "",
                lambda actor: self.admin_queue.clean(state, grace, actor),
            )

    async def _admin(self, op: str, job: str, call: Callable[[str], Awaitable[Any]]) -> None:
        actor = self._next("adm")
        try:
            result = await self._guard(op, call(actor))
            error, semantic = "", False
            self._note(f"admin {op} {job} by {actor} -> {result}")
        except EngineError as exc:
            error, semantic = f"{type(exc).__name__}: {exc}", True
            self._note(f"admin {op} {job} by {actor} raised {error[:100]}")
        except (RedisError, OSError) as exc:
            error, semantic = f"{type(exc).__name__}: {exc}", False
            self._note(f"admin {op} {job} by {actor} raised {error[:100]}")
        self.check.admin.append(AdminRecord(actor, op, job, error, semantic))
        if op == "pause" and not error:
            self._paused_steps = 1
        elif op == "resume" and not error:
            self._paused_steps = 0
        elif self._paused_steps:
            self._paused_steps += 1

    # -- the end ----------------------------------------------------------------

    async def _drain(self) -> None:
        """Faults off, queue resumed, a worker up; then every job must finish."""
        for proxy in (
            self.producer_proxy,
            self.admin_proxy,
            *(w.proxy for w in self.workers.values()),
        ):
            proxy.clear_rules()
            proxy.stop_random()
            proxy.resume()
        for w in self.workers.values():
            w.life.stalls = [(a, min(b, time.time()), lossy) for a, b, lossy in w.life.stalls]
        await asyncio.gather(*self._background, return_exceptions=True)
        for _, setting in BLIPS:
            await self.observer.config_set(setting, 0)
        self.check.refusals = [(a, min(b, time.time())) for a, b in self.check.refusals]
        await self.admin_queue.resume("drain")
        if not self._live():
            await self._start_worker()
        self._note("drain: faults off, queue resumed")
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        while time.monotonic() < deadline:
            await self._observe()
            s = self._snap
            if not any(s.members[x] for x in ("wait", "prioritized", "active", "delayed")):
                break
            await asyncio.sleep(0.25)
        await self._observe()
        self.check.final(self._snap, time.time())
        for w in self._live():
            await self._close(w)
        self._note("drain done, workers closed")
        for w in self.workers.values():
            lines = w.log_path.read_text(errors="replace").splitlines()
            self.check.check_logs(w.life.name, lines, time.time())
        s = self._snap
        self.report.stats.update(
            adds=len(self.check.adds),
            jobs=len(self.check.by_job),
            completed_events=sum(1 for e in self.check.events if e.name == "completed"),
            failed_events=sum(1 for e in self.check.events if e.name == "failed"),
            stalled_events=sum(1 for e in self.check.events if e.name == "stalled"),
            left=sum(len(s.members[x]) for x in ("wait", "prioritized", "active", "delayed")),
        )

    async def _teardown(self) -> None:
        for w in self.workers.values():
            if w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()
        for task in list(self._background):
            task.cancel()
        for m in (self.producer, self.admin):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(m.close_all(), 10)
        for proxy in (
            self.producer_proxy,
            self.admin_proxy,
            *(w.proxy for w in self.workers.values()),
        ):
            await proxy.close()
        await self.observer.aclose()
        await self.ledger.aclose()
        self.main.cleanup()
        self.ledger_server.cleanup()


async def run_model(seed: int, config: ModelConfig | None = None) -> Report:
    return await ModelRun(seed, config).run()

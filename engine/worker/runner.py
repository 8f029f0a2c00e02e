"""The handler runner: turns a claimed job into a running attempt and its outcome.

One task per running job calls the handler (loop, thread or process pool, see
``engine/pool.py``) under the job's ``timeout`` and appends a :class:`Finish` for the
exchange to send. A handler's failure is the job's, never the worker's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import traceback
from typing import TYPE_CHECKING, Any

import orjson

from .. import tracing
from ..errors import UnrecoverableError
from ..job import (
    DEFAULT_JOB_NAME,
    Job,
    JobState,
    UnreadableJob,
    read_field,
    read_int,
    read_options,
)
from ..options import JobOptions, Retention
from ..pool import Handler, HandlerCall, HandlerRunner
from .attempt import Attempt, Finish

if TYPE_CHECKING:
    from .core import Worker

logger = logging.getLogger("engine.worker")

_MAX_STACK_CHARS = 8000
# A failed reason is stored in the job and copied into its events: capped like the trace.
MAX_REASON_CHARS = 2000


def cap_reason(reason: str) -> str:
    if len(reason) <= MAX_REASON_CHARS:
        return reason
    return reason[: MAX_REASON_CHARS - 20] + f"... ({len(reason)} chars)"


def retention_args(r: Retention) -> tuple[int, int]:
    return (-1 if r.count is None else r.count, -1 if r.age_s is None else r.age_s * 1000)


class JobRunner:
    """Starts attempts of claimed jobs and records how each one ended."""

    def __init__(self, worker: Worker, handler: Handler) -> None:
        self.worker = worker
        o = worker.options
        self.handlers = HandlerRunner(
            handler,
            threads=o.concurrency,
            processes=(o.pool_size or min(o.concurrency, os.cpu_count() or 1))
            if o.use_process_pool
            else None,
        )
        self._opts_cache: dict[str, JobOptions] = {}

    def _options(self, raw: str) -> JobOptions:
        opts = self._opts_cache.get(raw)
        if opts is None:
            opts = read_options(raw)
            if len(self._opts_cache) < 1024:
                self._opts_cache[raw] = opts
        return opts

    def _job(self, raw: list[Any], now_ms: int) -> Job:
        job_id, _token, name, data, opts, atm, ts, stc, prog = raw
        try:  # the hot path: every field readable
            return Job(
                id=job_id,
                queue=self.worker.queue_name,
                name=name or DEFAULT_JOB_NAME,
                data=orjson.loads(data),
                opts=self._options(opts),
                timestamp=int(ts),
                attempts_made=int(atm),
                stalled_count=int(stc),
                progress=orjson.loads(prog) if prog else 0,
                processed_on=now_ms,
                state=JobState.ACTIVE,
            )
        except (ValueError, TypeError):
            pass  # read again field by field, to name the one that cannot be read
        return Job(
            id=job_id,
            queue=self.worker.queue_name,
            name=name or DEFAULT_JOB_NAME,
            data=read_field("data", data),
            opts=self._options(opts),
            timestamp=read_int("ts", ts),
            attempts_made=read_int("atm", atm),
            stalled_count=read_int("stc", stc),
            progress=read_field("prog", prog, 0),
            processed_on=now_ms,
            state=JobState.ACTIVE,
        )

    def start(self, raw: list[Any], now_ms: int, claimed_at: float) -> None:
        """Start one job of a claim reply (see move_to_active's Returns) received at
        ``claimed_at`` (monotonic s). A job whose stored fields cannot be read fails
        alone, for good, without running."""
        w = self.worker
        job_id, token = raw[0], raw[1]
        if (job_id, token) in w._attempts:
            return  # a resent claim's reply naming an attempt already running here
        try:
            job = self._job(raw, now_ms)
        except UnreadableJob as exc:
            self._poisoned(job_id, token, exc, now_ms)
            return
        except Exception as exc:  # a reply this version cannot read: that job alone fails
            self._poisoned(job_id, token, UnreadableJob("reply", repr(exc)), now_ms)
            return
        attempt = Attempt(w, job, token, claimed_at=claimed_at)
        job._runtime = attempt
        w._attempts[(job_id, token)] = attempt
        w._busy += 1
        attempt.task = asyncio.create_task(self._run(attempt))
        logger.info("Job %s active in queue %s", job_id, w.queue_name)

    def _poisoned(self, job_id: str, token: str, exc: UnreadableJob, now_ms: int) -> None:
        w = self.worker
        logger.error("Job %s of queue %s cannot run: %s; failing it", job_id, w.queue_name, exc)
        job = Job(
            id=job_id,
            queue=w.queue_name,
            name=DEFAULT_JOB_NAME,
            data=None,
            opts=JobOptions(),
            timestamp=0,
            processed_on=now_ms,
            state=JobState.ACTIVE,
        )
        attempt = Attempt(w, job, token)
        w._attempts[(job_id, token)] = attempt
        w._pending.append(self.fail(attempt, UnrecoverableError(str(exc)), str(exc), stack=False))
        w._wake.set()

    async def _run(self, attempt: Attempt) -> None:
        w = self.worker
        job = attempt.job
        logger.info("Processing job %s of queue %s", job.id, w.queue_name)
        call: list[HandlerCall] = []
        try:
            finish = await self._attempt(attempt, call)
        except asyncio.CancelledError:
            if attempt.released:
                return  # close() hands it back
            raise
        finally:
            if call and call[0].running:
                # A thread (or child, or a coroutine that ignores its cancellation) runs
                # on: its slot stays taken until it really ends, so the worker never claims
                # a job it has no thread for.
                self._hold_slot(job, call[0])
            else:
                self._slot_freed(job, late=False)
        w._pending.append(finish)

    def _hold_slot(self, job: Job, call: HandlerCall) -> None:
        late = self.handlers.kind != "coroutine"
        call.on_end(lambda: self._slot_freed(job, late=late))
        if not late:
            # A cancelled coroutine normally ends at its next await: say so only if not.
            def check() -> None:
                if call.running:
                    logger.warning(
                        "Handler of job %s of queue %s ignores its cancellation and is still "
                        "running; its slot stays taken until it returns",
                        job.id,
                        self.worker.queue_name,
                    )

            asyncio.get_running_loop().call_later(1.0, check)

    def _slot_freed(self, job: Job, *, late: bool) -> None:
        w = self.worker
        w._busy -= 1
        w._wake.set()
        if late:
            logger.warning(
                "Handler of job %s of queue %s returned after its attempt was over; slot freed",
                job.id,
                w.queue_name,
            )

    async def _attempt(self, attempt: Attempt, holder: list[HandlerCall]) -> Finish:
        if not tracing.active():
            return await self._handle(attempt, holder)
        job = attempt.job
        telemetry = job.opts.telemetry
        with tracing.consuming(
            job.queue,
            job.id,
            job.name,
            job.attempts_made + 1,
            None if telemetry is None else telemetry.metadata,
        ) as span:
            finish = await self._handle(attempt, holder)
            if span is not None and not finish.complete:
                tracing.mark_failed(span, finish.reason)
            return finish

    async def _handle(self, attempt: Attempt, holder: list[HandlerCall]) -> Finish:
        job = attempt.job
        timeout_ms = job.opts.timeout
        if self.handlers.kind == "coroutine":
            return await self._handle_here(attempt)
        call: HandlerCall | None = None
        try:
            call = self.handlers.call(job)
            holder.append(call)
            attempt.call = call  # a cancel stops it (engine/worker/cancel.py)
            # The timeout counts from the handler's real start (a thread may wait for one).
            await call.started.wait()
            done, _ = await asyncio.wait(
                {call.outcome}, timeout=None if timeout_ms is None else timeout_ms / 1000
            )
            if not done:
                call.outcome.cancel()
                if call.running and self.handlers.kind != "coroutine":
                    logger.warning(
                        "Job %s of queue %s timed out after %d ms; its handler %s is still "
                        "running and keeps its slot until it returns",
                        job.id,
                        self.worker.queue_name,
                        timeout_ms,
                        self.handlers.kind,
                    )
                return self.fail(attempt, None, f"job timed out after {timeout_ms} ms")
            result = call.outcome.result()
            rv = orjson.dumps(result).decode()
        except asyncio.CancelledError:
            if call is not None:
                call.outcome.cancel()
            raise
        except Exception as exc:  # the handler's failure is the job's, never the worker's
            return self.fail(attempt, exc, str(exc) or type(exc).__name__)
        keep, age_ms = retention_args(job.opts.remove_on_complete)
        return Finish(attempt, True, [job.id, attempt.token, rv, keep, age_ms])

    async def _handle_here(self, attempt: Attempt) -> Finish:
        """A coroutine handler runs in the attempt's own task (no task or wait of its own
        per job: the hot path). One that ignores its timeout's cancellation holds its
        attempt, and so its slot, until it returns; close() is bounded without it."""
        job = attempt.job
        timeout_ms = job.opts.timeout
        handler = self.handlers.handler
        try:
            if timeout_ms is None:
                result = await handler(job)
            else:
                try:
                    async with asyncio.timeout(timeout_ms / 1000) as scope:
                        result = await handler(job)
                except TimeoutError:
                    if not scope.expired():
                        raise
                    return self.fail(attempt, None, f"job timed out after {timeout_ms} ms")
            rv = orjson.dumps(result).decode()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the handler's failure is the job's, never the worker's
            return self.fail(attempt, exc, str(exc) or type(exc).__name__)
        keep, age_ms = retention_args(job.opts.remove_on_complete)
        return Finish(attempt, True, [job.id, attempt.token, rv, keep, age_ms])

    def fail(
        self, attempt: Attempt, exc: BaseException | None, reason: str, *, stack: bool = True
    ) -> Finish:
        w = self.worker
        job = attempt.job
        made = job.attempts_made + 1
        final = isinstance(exc, UnrecoverableError) or made >= job.opts.attempts
        delay = -1 if final else self._retry_delay(job, made, exc)
        trace = ""
        if exc is not None and stack:
            trace = "".join(traceback.format_exception(exc))[-_MAX_STACK_CHARS:]
        reason = cap_reason(reason)
        keep, age_ms = retention_args(job.opts.remove_on_fail)
        args: list[str | int] = [
            w.keys.job_prefix,
            job.id,
            attempt.token,
            reason,
            trace,
            w.options.max_stack_traces,
            delay,
            keep,
            age_ms,
            w.store.max_events,
            w.options.retention_batch,
        ]
        return Finish(attempt, False, args, delay, reason)

    def _retry_delay(self, job: Job, attempts_made: int, exc: BaseException | None) -> int:
        backoff = job.opts.backoff
        if backoff is None:
            return 0
        strategy = self.worker.options.backoff_strategy
        if backoff.type == "custom" and strategy is not None:
            error: BaseException = exc if exc is not None else TimeoutError("job timed out")
            try:
                return max(int(strategy(attempts_made, error, job)), 0)
            except Exception:
                logger.exception(
                    "backoff_strategy failed for job %s; using %d ms", job.id, backoff.delay
                )
                return backoff.delay
        return backoff.delay_for(attempts_made, random.random())

    def shutdown(self) -> None:
        self.handlers.shutdown()

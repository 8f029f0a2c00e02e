"""Recording finished attempts: kept until Redis acknowledges them.

A finish goes out in the exchange's pipeline (completions batched in one complete_job
call, failures one fail_job each) and is settled from its own reply:

- acknowledged: logged, forgotten;
- the connection failed or timed out (it may have run) or Redis refused it (it did not):
  kept and resent, which is safe because each finish call is idempotent by its token;
- a script error (a bug or bad data) that would recur: a batch is split and its finishes
  resent one by one to find the job at fault; that job alone is then failed for good with
  the error as reason, and if even that is refused it is left to recovery. So one job
  never throws away other jobs' finishes and nothing loops forever.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UnrecoverableError
from ..logs import job_fields
from .attempt import Finish
from .outage import Verdict, classify

if TYPE_CHECKING:
    from .core import Worker

logger = logging.getLogger("engine.worker")

# Most jobs finished by one complete_job call (bounds the script's run).
COMPLETE_CHUNK = 500


@dataclass(slots=True)
class Group:
    """Finishes sent as one script call."""

    finishes: list[Finish]
    complete: bool


class Finishing:
    """Queues finishes on a pipeline and settles each from its reply."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def queue(self, pipe: Any, finishes: list[Finish]) -> list[Group]:
        w = self.worker
        batched = [f for f in finishes if f.complete and not f.alone]
        groups = [
            Group(batched[i : i + COMPLETE_CHUNK], True)
            for i in range(0, len(batched), COMPLETE_CHUNK)
        ]
        groups += [Group([f], f.complete) for f in finishes if f.alone or not f.complete]
        for group in groups:
            if group.complete:
                await w._calls.complete(
                    [f.args for f in group.finishes], w.options.retention_batch, pipe
                )
            else:
                await w._calls.fail(group.finishes[0].args, pipe)
        return groups

    def requeue(self, finishes: list[Finish], *, maybe_applied: bool) -> None:
        for f in finishes:
            f.resent = f.resent or maybe_applied
        self.worker._pending[:0] = finishes

    def settle(self, group: Group, result: Any) -> Verdict | None:
        """Apply one call's reply; returns the verdict of its error, if it failed."""
        if isinstance(result, Exception):
            verdict = classify(result)
            if verdict is not Verdict.BROKEN:
                self.requeue(group.finishes, maybe_applied=verdict is Verdict.UNKNOWN)
            elif len(group.finishes) > 1:
                for f in group.finishes:
                    f.alone = True
                self.requeue(group.finishes, maybe_applied=False)
            else:
                self._quarantine(group.finishes[0], result)
            return verdict
        if group.complete:
            _now, codes, durations = result
            for f, code, duration in zip(group.finishes, codes, durations, strict=True):
                self._completed(f, int(code), int(duration))
        else:
            self._failed(group.finishes[0], result)
        return None

    def _quarantine(self, f: Finish, error: Exception) -> None:
        w = self.worker
        attempt = f.attempt
        if f.quarantined:
            w._attempts.pop((attempt.job.id, attempt.token), None)
            logger.error(
                "Job %s of queue %s: its outcome cannot be recorded (%s); left to recovery",
                attempt.job.id,
                w.queue_name,
                error,
            )
            return
        reason = f"the engine could not record this attempt's outcome: {error}"
        logger.error("Job %s of queue %s: %s; failing it", attempt.job.id, w.queue_name, reason)
        failure = w._runner.fail(attempt, UnrecoverableError(reason), reason, stack=False)
        failure.quarantined = failure.alone = True
        failure.resent = f.resent
        w._pending[:0] = [failure]

    def _lease_lost(self, f: Finish) -> None:
        what = "completion" if f.complete else "failure"
        if f.resent:
            # Sent again after an unknown outcome: the first copy may have been recorded
            # (and the job since retried, claimed or removed), so nothing says it was lost.
            logger.info(
                "Job %s of queue %s: resent %s not applied (already recorded, or lease lost)",
                f.attempt.job.id,
                self.worker.queue_name,
                what,
            )
            return
        w = self.worker
        w._lease_losses += 1
        logger.warning(
            "Job %s of queue %s: %s refused, lease lost (its attempt claimed at %s; the job "
            "was recovered elsewhere)",
            f.attempt.job.id,
            w.queue_name,
            what,
            f.attempt.claimed_on,
        )

    def _gone(self, f: Finish) -> None:
        # The client resent the call after its first copy ran (a reply lost in flight) and
        # that copy's retention deleted the job (`removeOn*: true`); or it was removed.
        logger.info(
            "Job %s of queue %s no longer exists when its %s was sent again (recorded, then "
            "removed by its retention, or removed)",
            f.attempt.job.id,
            self.worker.queue_name,
            "completion" if f.complete else "failure",
        )

    def _completed(self, f: Finish, code: int, duration_ms: int) -> None:
        w = self.worker
        attempt = f.attempt
        w._attempts.pop((attempt.job.id, attempt.token), None)
        if code == 1:
            logger.info(
                "Job %s completed in queue %s (%d ms)",
                attempt.job.id,
                w.queue_name,
                duration_ms,
                extra=job_fields(attempt.job.id, w.queue_name),
            )
        elif code == -2:
            self._lease_lost(f)
        elif code == -1:
            self._gone(f)
        # 0: this very call already ran (a resent call)

    def _failed(self, f: Finish, result: Any) -> None:
        w = self.worker
        attempt = f.attempt
        job = attempt.job
        w._attempts.pop((job.id, attempt.token), None)
        if isinstance(result, int):
            if result == -2:
                self._lease_lost(f)
            elif result == -1:
                self._gone(f)
            return  # 0: this very call already ran (a resent call)
        if int(result[1]):
            logger.info(
                "Job %s failed in queue %s (attempt %d of %d): %s; retrying in %d ms",
                job.id,
                w.queue_name,
                int(result[2]),
                job.opts.attempts,
                f.reason,
                f.delay_ms,
                extra=job_fields(job.id, w.queue_name),
            )
            if f.delay_ms > 0:
                w._exchange.learn_due(time.monotonic() + f.delay_ms / 1000)
        else:
            logger.warning(
                "Job %s failed in queue %s: %s",
                job.id,
                w.queue_name,
                f.reason,
                extra=job_fields(job.id, w.queue_name),
            )

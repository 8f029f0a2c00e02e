"""The lease keeper: confirms fresh claims and renews every running job's lease, each in
one script call for all the jobs concerned.

A claim puts a job in ``active`` for the short claim deadline only
(``WorkerOptions.claim_timeout_ms``): a worker that freezes right after Redis ran its
claim then holds the job seconds, not a lease. Jobs still running a third of that
deadline after their claim get the full lease in one batched call (``confirm``); shorter
jobs finish first and cost nothing. Then one renewal per ``renew_interval_ms``.

A lease found lost means another worker may now own the job; every later call of that
attempt is refused by Redis. Only a token that changed counts: a finish that crossed the
renewal is not a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from .attempt import Attempt
from .cancel import take_cancelled
from .outage import REDIS_ERRORS, Outage

if TYPE_CHECKING:
    from .core import Worker

logger = logging.getLogger("engine.worker")


class LeaseKeeper:
    """Confirms and renews the leases of a worker's running attempts."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.outage = Outage(
            f"lease keeper of worker {worker.id} (queue {worker.queue_name})",
            worker.options.reconnect_max_s,
        )
        self.confirm_after_s = worker.options.claim_ms / 3000
        self._confirm_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = asyncio.Event()

    def claimed(self, claimed_at: float) -> None:
        """Jobs were claimed at ``claimed_at`` (monotonic s): confirm them then if they
        still run."""
        at = claimed_at + self.confirm_after_s
        if self._confirm_at is not None and self._confirm_at <= at:
            return
        self._confirm_at = at
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(at - time.monotonic(), 0), self._due.set)

    async def run(self) -> None:
        w = self.worker
        interval_s = w.options.renew_ms / 1000
        next_renewal = time.monotonic() + interval_s
        while True:
            now = time.monotonic()
            if now < next_renewal:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._due.wait(), next_renewal - now)
            self._due.clear()
            if self._timer is not None:
                self._timer.cancel()
            self._confirm_at = self._timer = None
            now = time.monotonic()
            due, later = self._unconfirmed(now)
            if now >= next_renewal:
                next_renewal = now + interval_s
                held = [a for a in w._attempts.values() if not a.lost]
            else:
                held = due
            if held:
                await self._extend(held)
            if later is not None:
                self.claimed(later - self.confirm_after_s)

    def _unconfirmed(self, now: float) -> tuple[list[Attempt], float | None]:
        """Unconfirmed attempts still running whose confirmation time has come, and the
        next such time."""
        due, later = [], None
        for a in self.worker._attempts.values():
            if a.confirmed or a.lost or a.task is None or a.task.done():
                continue  # a finish confirms (or a lost one is refused) by itself
            at = a.claimed_at + self.confirm_after_s
            if at <= now:
                due.append(a)
            elif later is None or at < later:
                later = at
        return due, later

    async def _extend(self, held: list[Attempt]) -> None:
        w = self.worker
        try:
            lost = await w._calls.extend([(a.job.id, a.token) for a in held], w.options.lease_ms)
        except REDIS_ERRORS as exc:
            backoff_s = self.outage.failed(exc)
            # Retry soon: a claim unconfirmed past its deadline goes back to waiting.
            if any(not a.confirmed for a in held):
                self.claimed(time.monotonic() + backoff_s - self.confirm_after_s)
            return
        self.outage.ok()
        lost = take_cancelled(w, lost)  # attempts cancel_job ended: stopped there
        ended = {(str(entry[0]), str(entry[1])): len(entry) > 2 for entry in lost}
        for a in held:
            if (a.job.id, a.token) not in ended:
                a.confirmed = True
        for (job_id, token), gone in ended.items():
            attempt = w._attempts.get((job_id, token))
            if attempt is None or attempt.lost:
                continue
            attempt.lost = True  # not renewed again; its finish is refused (or "gone")
            if gone:  # {id, token, "gone"}: the attempt's own finish deleted it, or removed
                logger.info(
                    "Job %s of queue %s no longer exists (finished by this attempt, or removed)",
                    job_id,
                    w.queue_name,
                )
                continue
            w._lease_losses += 1
            logger.warning(
                "Lease lost on job %s of queue %s (its attempt claimed at %s); "
                "its outcome will be refused",
                attempt.job.id,
                w.queue_name,
                attempt.claimed_on,
            )

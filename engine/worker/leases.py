"""The lease keeper: renews every running job's lease in one script call per interval.

A lease found lost means another worker may now own the job; every later call of that
attempt is refused by Redis.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .cancel import stop_cancelled
from .outage import REDIS_ERRORS, Outage

if TYPE_CHECKING:
    from .core import Worker

logger = logging.getLogger("engine.worker")


class LeaseKeeper:
    """Renews the leases of a worker's running attempts."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.outage = Outage(
            f"lease keeper of worker {worker.id} (queue {worker.queue_name})",
            worker.options.reconnect_max_s,
        )

    async def run(self) -> None:
        w = self.worker
        interval_s = w.options.renew_ms / 1000
        k = w.keys
        while True:
            await asyncio.sleep(interval_s)
            held = [a for a in w._attempts.values() if not a.lost]
            if not held:
                continue
            pairs: list[str | int] = []
            for a in held:
                pairs += [a.job.id, a.token]
            try:
                lost = await w.store.scripts.extend_leases(
                    [k.active], [k.job_prefix, w.options.lease_ms, *pairs]
                )
            except REDIS_ERRORS as exc:
                self.outage.failed(exc)
                continue
            self.outage.ok()
            for job_id, token, cancelled in lost:
                attempt = w._attempts.get((job_id, token))
                if attempt is not None and int(cancelled):
                    stop_cancelled(w, attempt, "seen at lease renewal")
                elif attempt is not None and not attempt.lost:
                    attempt.lost = True
                    logger.warning(
                        "Lease lost on job %s of queue %s; its outcome will be refused",
                        attempt.job.id,
                        w.queue_name,
                    )

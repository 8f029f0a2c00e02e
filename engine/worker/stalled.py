"""Stalled recovery: every instance runs it at ``stalled_interval_ms`` (one guarded call
per interval across the queue's workers)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..options import DEFAULT_KEEP_FAILED
from .outage import REDIS_ERRORS, Outage

if TYPE_CHECKING:
    from .core import Worker

logger = logging.getLogger("engine.worker")

# Most jobs one recover_stalled call recovers.
STALLED_BATCH = 1000


class StalledRecovery:
    """Moves jobs whose lease ran out back to waiting (or to failed past the limit)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.outage = Outage(
            f"stalled recovery of worker {worker.id} (queue {worker.queue_name})",
            worker.options.reconnect_max_s,
        )

    async def run(self) -> None:
        w = self.worker
        o = w.options
        while True:
            try:
                requeued, failed, reclaimed = await w._calls.recover(
                    max_stalled=o.max_stalled_count,
                    batch=STALLED_BATCH,
                    guard_ms=o.stalled_interval_ms,
                    default_keep_failed=DEFAULT_KEEP_FAILED,
                    retention_batch=o.retention_batch,
                )
            except REDIS_ERRORS as exc:
                self.outage.failed(exc)
            else:
                self.outage.ok()
                for job_id in requeued:
                    logger.warning(
                        "Job %s stalled in queue %s; moved back to waiting", job_id, w.queue_name
                    )
                for job_id in failed:
                    logger.warning(
                        "Job %s stalled in queue %s; failed: stalled more than allowable limit",
                        job_id,
                        w.queue_name,
                    )
                for job_id in reclaimed:
                    logger.warning(
                        "Job %s of queue %s was claimed but never confirmed running (its "
                        "worker froze or died); moved back to waiting",
                        job_id,
                        w.queue_name,
                    )
            # Safety net for a lost wake-up (a worker that popped a marker and died before
            # its claim): an idle worker claims once per interval, not per blocking timeout.
            w._exchange.poke()
            await asyncio.sleep(o.stalled_interval_ms / 1000)

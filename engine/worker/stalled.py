"""Stalled recovery: every instance runs it at ``stalled_interval_ms`` (one guarded call
per interval across the queue's workers)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

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
        k = w.keys
        keys = [k.active, k.wait, k.failed, k.events, k.marker, k.stalled_check]
        while True:
            try:
                requeued, failed = await w.store.scripts.recover_stalled(
                    keys,
                    [
                        k.job_prefix,
                        o.max_stalled_count,
                        STALLED_BATCH,
                        w.store.max_events,
                        o.stalled_interval_ms,
                    ],
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
            # Safety net for a lost wake-up (a worker that popped a marker and died before
            # its claim): an idle worker claims once per interval, not per blocking timeout.
            w._exchange.poke()
            await asyncio.sleep(o.stalled_interval_ms / 1000)

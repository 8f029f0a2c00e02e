"""The worker: takes jobs of one queue from Redis, runs the handler, records the outcome.

A :class:`Worker` is a few rooms, each a small module, run as supervised tasks
(``supervisor.py`` decides what an unexpected failure does):

1. the claim/finish exchange (``exchange.py``), the driver task;
2. the handler runner (``runner.py``, over ``engine/pool.py``), one task per running job;
3. the lease keeper (``leases.py``);
4. stalled recovery (``stalled.py``);
5. outage tracking (``outage.py``): each task backs off on Redis errors and logs its
   own outage once.

Delivery is at-least-once: a job whose worker dies runs again after its lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

from ..connection import RedisSettings
from ..keys import validate_queue_name
from ..pool import Handler
from ..store import Store
from .attempt import Attempt, Finish
from .calls import WorkerCalls
from .exchange import Exchange
from .leases import LeaseKeeper
from .options import WorkerOptions
from .outage import REDIS_ERRORS, Outage
from .runner import JobRunner
from .stalled import StalledRecovery
from .supervisor import Supervisor

if TYPE_CHECKING:
    from ..manager import QueueManager

logger = logging.getLogger("engine.worker")

# What close() may spend after the handlers' grace period, whatever Redis does.
CLOSE_BOUND_S = 6.0
_INTERRUPT_S = 1.0  # cancelling the blocking pop (and re-arming a wake-up): before the grace
_CANCEL_GRACE_S = 1.0  # for cancelled handlers to end
_STOP_S = 1.0  # cancelling the tasks and closing the blocking connection


class Worker:
    """Processes the jobs of one queue with ``handler(job)``; its return value (JSON) is
    stored as the job's result. Build from a :class:`QueueManager` (or a ``Store``), then
    ``await start()`` and eventually ``await close(timeout_s=...)``."""

    def __init__(
        self,
        owner: QueueManager | Store,
        queue_name: str,
        handler: Handler,
        options: WorkerOptions | None = None,
    ) -> None:
        self.options = options or WorkerOptions()
        self.queue_name = validate_queue_name(queue_name)
        self.store: Store = owner if isinstance(owner, Store) else owner.store
        self._settings: RedisSettings | None = getattr(owner, "settings", None)
        self.keys = self.store.keys(queue_name)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Keyed by (job id, token): a token is unique per job only.
        self._attempts: dict[tuple[str, str], Attempt] = {}
        self._busy = 0
        self._pending: list[Finish] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._closed = False
        self._started = False
        # Leases found lost (a real loss: the token changed), for status and metrics.
        self._lease_losses = 0
        self._calls = WorkerCalls(self.store, self.keys)
        self._runner = JobRunner(self, handler)
        self._exchange = Exchange(self)
        self._leases = LeaseKeeper(self)
        self._stalled = StalledRecovery(self)
        self._supervisor = Supervisor(f"worker {self.id}", self.options.reconnect_max_s)
        self._close_outage = Outage(
            f"close of worker {self.id} (queue {queue_name})", self.options.reconnect_max_s
        )

    def __repr__(self) -> str:
        return f"Worker({self.queue_name!r}, id={self.id!r})"

    @property
    def running(self) -> int:
        """Handlers running now."""
        return self._busy

    def handling(self) -> bool:
        """Whether an attempt is still running (its outcome not yet known)."""
        return any(a.task is not None and not a.task.done() for a in self._attempts.values())

    def status(self) -> dict[str, Any]:
        """A read-only snapshot for health checks and metrics: running handlers, pending
        finishes, and per internal task its restarts and last unexpected error."""
        tasks = {name: s.as_dict() for name, s in self._supervisor.status.items()}
        errors = [s for s in self._supervisor.status.values() if s.last_error_at is not None]
        last = max(errors, key=lambda s: s.last_error_at or 0.0, default=None)
        return {
            "id": self.id,
            "queue": self.queue_name,
            "started": self._started,
            "closing": self._closing,
            "running": self._busy,
            "concurrency": self.options.concurrency,
            "pending_finishes": len(self._pending),
            "lease_losses": self._lease_losses,
            "restarts": self._supervisor.restarts,
            "last_error": None if last is None else last.last_error,
            "tasks": tasks,
        }

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> Worker:
        """Start fetching. Returns at once; the worker runs until :meth:`close`."""
        if self._started:
            return self
        self._started = True
        self._exchange.open()
        self._supervisor.start("exchange", self._exchange.run)
        self._supervisor.start("leases", self._leases.run)
        self._supervisor.start("stalled", self._stalled.run)
        logger.info(
            "Worker %s started on queue %s (concurrency %d)",
            self.id,
            self.queue_name,
            self.options.concurrency,
        )
        return self

    async def close(self, timeout_s: float = 30.0) -> None:
        """Stop fetching, let running jobs finish within ``timeout_s``, hand the others back
        to ``wait`` at once, then release everything. Safe to call twice; never raises.

        Bounded whatever handlers and Redis do: ``timeout_s`` for the handlers, then at
        most ``CLOSE_BOUND_S`` for the rest (cancelled handlers that ignore it are left
        running; hand-backs and finishes Redis does not take in time re-run after their
        lease)."""
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._wake.set()
        try:
            await self._close(max(timeout_s, 0.0))
        except Exception:  # close never raises: log what went wrong, finish closing
            logger.exception("Worker %s of queue %s: error while closing", self.id, self.queue_name)
        finally:
            await self._stop()
        logger.info("Worker %s of queue %s closed", self.id, self.queue_name)

    async def _close(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exchange.interrupt_block(_INTERRUPT_S), _INTERRUPT_S)
        handlers = [a.task for a in self._attempts.values() if a.task and not a.task.done()]
        if handlers:
            await asyncio.wait(handlers, timeout=timeout_s)
        deadline = loop.time() + CLOSE_BOUND_S - _STOP_S
        leftover = [a for a in self._attempts.values() if a.task and not a.task.done()]
        for attempt in leftover:
            attempt.released = True
            assert attempt.task is not None
            attempt.task.cancel()
        if leftover:
            tasks = [a.task for a in leftover if a.task is not None]
            _, stuck = await asyncio.wait(tasks, timeout=_CANCEL_GRACE_S)
            if stuck:
                logger.warning(
                    "Worker %s closing: %d handler(s) of queue %s ignore cancellation; "
                    "their jobs are handed back anyway",
                    self.id,
                    len(stuck),
                    self.queue_name,
                )
            try:
                await asyncio.wait_for(self._release(leftover), max(deadline - loop.time(), 0.01))
            except TimeoutError:
                logger.warning(
                    "Worker %s could not hand back %d job(s) of queue %s in time; they "
                    "re-run after their lease",
                    self.id,
                    len(leftover),
                    self.queue_name,
                )
        with contextlib.suppress(TimeoutError, *REDIS_ERRORS):
            await asyncio.wait_for(
                self._exchange.hand_back_doubts(), max(deadline - loop.time(), 0.01)
            )
        driver = self._supervisor.tasks.get("exchange")
        if driver is not None:
            # Flush the finishes of jobs that ended in the grace period (bounded: Redis
            # may be down; unsent finishes then re-run after their lease expires).
            try:
                await asyncio.wait_for(asyncio.shield(driver), max(deadline - loop.time(), 0.01))
            except TimeoutError:
                logger.warning(
                    "Worker %s closing: %d finished job(s) of queue %s could not be recorded",
                    self.id,
                    len(self._pending),
                    self.queue_name,
                )

    async def _stop(self) -> None:
        inflight = list(self._exchange.inflight)
        for task in inflight:
            task.cancel()
        tasks = [*inflight, *self._supervisor.tasks.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_STOP_S / 2)
        self._runner.shutdown()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._exchange.aclose(), _STOP_S / 2)
        self._attempts.clear()

    async def _release(self, attempts: list[Attempt]) -> None:
        pairs = [(a.job.id, a.token) for a in attempts]
        for _ in range(3):
            try:
                released = await self._calls.release(pairs)
            except REDIS_ERRORS as exc:
                await asyncio.sleep(self._close_outage.failed(exc))
                continue
            for job_id in released:
                logger.info(
                    "Job %s handed back to queue %s (worker closing)", job_id, self.queue_name
                )
            return
        logger.warning(
            "Worker %s could not hand back %d job(s) of queue %s; they re-run after their lease",
            self.id,
            len(attempts),
            self.queue_name,
        )

"""The queue manager: the object an asyncio service embeds (the seed's ``queueManager``)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from .connection import RedisSettings, create_client
from .errors import QueueNotFound
from .job import Job, JobState
from .keys import validate_prefix
from .options import JobOptions
from .queue import Queue, QueueStats
from .store import DEFAULT_MAX_EVENTS, Store
from .waiters import ResultWaiters

if TYPE_CHECKING:
    from .checks import CheckReport
    from .lock import LeaseConfig
    from .pool import Handler
    from .scheduler import Scheduler
    from .worker import Worker, WorkerOptions
    from .worker.cancel import CancelNotices

logger = logging.getLogger("engine.manager")

# The most one scheduler's (or the client's) close may take during close_all.
CLOSER_BOUND_S = 3.0


async def _bounded(step: Awaitable[Any]) -> None:
    try:
        await asyncio.wait_for(step, CLOSER_BOUND_S)
    except TimeoutError:
        logger.warning("A close step took more than %.0f s; left to finish alone", CLOSER_BOUND_S)


async def _all(steps: list[Awaitable[Any]]) -> None:
    """Run close steps side by side; one failing never stops the others."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            logger.error("A close step failed", exc_info=result)


class QueueManager:
    """Creates queues on one Redis and runs the admin operations on them.

    ``redis_url`` defaults to ``REDIS_URL`` or ``redis://127.0.0.1:6379/0``; every key
    starts with ``prefix``. The Redis client connects lazily, on first use.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        prefix: str = "engine",
        *,
        settings: RedisSettings | None = None,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        self.settings = settings or (RedisSettings(url=redis_url) if redis_url else RedisSettings())
        self.prefix = validate_prefix(prefix)
        self.client = create_client(self.settings)
        self.store = Store(
            self.client,
            prefix=self.prefix,
            max_events=max_events,
            resend_window_ms=self.settings.resend_window_ms,
        )
        self._queues: dict[str, Queue] = {}
        self._closers: list[Any] = []
        self._workers: list[Worker] = []
        self._schedulers: dict[str, Scheduler] = {}
        self.waiters = ResultWaiters(self)
        # One pub/sub subscriber for every worker of this manager (engine/worker/cancel.py).
        self.cancel_notices: CancelNotices | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QueueManager:
        """Build from ``REDIS_URL`` and ``ENGINE_PREFIX``."""
        env = os.environ if env is None else env
        return cls(
            settings=RedisSettings.from_env(env), prefix=env.get("ENGINE_PREFIX") or "engine"
        )

    # -- queues ---------------------------------------------------------------

    def create_queue(
        self,
        name: str,
        default_job_options: Mapping[str, Any] | JobOptions | None = None,
    ) -> Queue:
        """Create (or return) the queue ``name``; ``default_job_options`` apply to every
        job added through this manager, under the job's own options."""
        options = JobOptions.parse(default_job_options) if default_job_options else None
        existing = self._queues.get(name)
        if existing is not None:
            if options is not None:
                existing.default_job_options = options
            return existing
        queue = Queue(
            self.store,
            name,
            options,
            wait_replicas=self.settings.wait_replicas,
            wait_timeout_ms=self.settings.wait_timeout_ms,
            waiters=self.waiters,
        )
        self._queues[name] = queue
        return queue

    def get_queue(self, name: str) -> Queue:
        """The queue created under ``name``; ``QueueNotFound`` otherwise."""
        try:
            return self._queues[name]
        except KeyError:
            raise QueueNotFound(f"queue {name!r} is not registered") from None

    @property
    def queues(self) -> dict[str, Queue]:
        """The queues created on this manager, by name."""
        return dict(self._queues)

    # -- producer ---------------------------------------------------------------

    async def add_job(
        self,
        queue: str,
        data: Any = None,
        opts: Mapping[str, Any] | JobOptions | None = None,
        *,
        name: str | None = None,
    ) -> Job:
        """Add a job to a registered queue (the seed's ``queueManager.addJob``).

        With Bull's ``repeat`` option (``{"jobId": "serpram-recurring", "repeat": {"cron":
        "*/5 * * * *"}}``) it upserts the schedule named by ``jobId`` instead (N instances
        doing so at boot make one schedule, one fire per tick) and returns the job its next
        fire will create (id ``<jobId>:<tick ms>``, not in Redis before that tick)."""
        if isinstance(opts, Mapping) and "repeat" in opts:
            from .schedulers import add_repeatable

            return await add_repeatable(self, queue, data, opts, name)
        return await self.get_queue(queue).add(data, opts, name=name)

    # -- admin ------------------------------------------------------------------

    async def get_stats(self, queue: str) -> QueueStats:
        return await self.get_queue(queue).get_stats()

    async def get_all_stats(self) -> dict[str, QueueStats]:
        """Stats of every registered queue in one round trip."""
        queues = list(self._queues.values())
        if not queues:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for q in queues:
                q._queue_stats(pipe)
            results = await pipe.execute()
        per = len(results) // len(queues)
        return {
            q.name: q._stats_from(results[i * per : (i + 1) * per]) for i, q in enumerate(queues)
        }

    async def get_jobs(
        self, queue: str, state: str | JobState, start: int = 0, end: int = 9
    ) -> list[Job]:
        return await self.get_queue(queue).get_jobs(state, start, end)

    async def get_job(self, queue: str, job_id: str) -> Job | None:
        return await self.get_queue(queue).get_job(job_id)

    async def pause_queue(self, queue: str, actor: str = "") -> bool:
        return await self.get_queue(queue).pause(actor)

    async def resume_queue(self, queue: str, actor: str = "") -> bool:
        return await self.get_queue(queue).resume(actor)

    async def clean_completed_jobs(self, queue: str, grace_ms: int, actor: str = "") -> int:
        """Remove completed jobs finished more than ``grace_ms`` ago; returns the count."""
        return await self.get_queue(queue).clean(JobState.COMPLETED, grace_ms, actor)

    async def clean_failed_jobs(self, queue: str, grace_ms: int, actor: str = "") -> int:
        """Remove failed jobs finished more than ``grace_ms`` ago; returns the count."""
        return await self.get_queue(queue).clean(JobState.FAILED, grace_ms, actor)

    async def retry_job(self, queue: str, job_id: str, actor: str = "") -> None:
        await self.get_queue(queue).retry_job(job_id, actor)

    async def remove_job(self, queue: str, job_id: str, actor: str = "") -> None:
        await self.get_queue(queue).remove_job(job_id, actor)

    async def promote_job(self, queue: str, job_id: str, actor: str = "") -> None:
        await self.get_queue(queue).promote_job(job_id, actor)

    async def cancel_job(self, queue: str, job_id: str, actor: str = "") -> JobState:
        """Cancel a job that has not finished (see :meth:`Queue.cancel_job`)."""
        return await self.get_queue(queue).cancel_job(job_id, actor)

    # -- schedules --------------------------------------------------------------

    def start_scheduler(
        self, queue: str, lease: LeaseConfig | None = None, **kwargs: Any
    ) -> Scheduler:
        """Start this instance's scheduler for ``queue`` (once; later calls return it): it
        contends for the queue's leader lease and, while leader, fires the queue's
        schedules. Stopped, and the lease released, by :meth:`close_all`."""
        from .scheduler import Scheduler

        existing = self._schedulers.get(queue)
        if existing is not None:
            existing.wake()
            return existing
        kwargs.setdefault("wait_replicas", self.settings.wait_replicas)
        kwargs.setdefault("wait_timeout_ms", self.settings.wait_timeout_ms)
        scheduler = Scheduler(self.store, queue, lease, **kwargs).start()
        self._schedulers[queue] = scheduler
        self._closers.append(scheduler.close)
        return scheduler

    @property
    def schedulers(self) -> dict[str, Scheduler]:
        """The schedulers started on this manager, by queue."""
        return dict(self._schedulers)

    # -- workers ----------------------------------------------------------------

    async def process(
        self,
        queue: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        options: WorkerOptions | None = None,
        **worker_options: Any,
    ) -> Worker:
        """Start a worker that runs ``handler(job)`` for the jobs of ``queue`` (registered
        if new). Options are :class:`WorkerOptions` fields, or ``options`` itself. The
        worker is closed by :meth:`close_all`, before anything else."""
        from .worker import Worker, WorkerOptions

        if options is None:
            options = WorkerOptions(concurrency=concurrency, **worker_options)
        elif worker_options:
            raise ValueError("pass either options or worker option keywords, not both")
        if queue not in self._queues:
            self.create_queue(queue)
        worker = Worker(self, queue, handler, options)
        await worker.start()
        self._workers.append(worker)
        if self.cancel_notices is None:
            from .worker.cancel import CancelNotices

            self.cancel_notices = CancelNotices(self.client)
        await self.cancel_notices.watch(worker)
        return worker

    @property
    def workers(self) -> list[Worker]:
        """The workers started on this manager."""
        return list(self._workers)

    # -- lifecycle --------------------------------------------------------------

    async def check(self, lease: LeaseConfig | None = None) -> CheckReport:
        """Startup checks (see :mod:`engine.checks`): raises ``StartupCheckError`` for
        Redis < 7.0 or a lease timing the client's socket timeout makes unsafe; warns
        (logged and in the report) when ``maxmemory-policy`` is not ``noeviction``."""
        from .checks import check_leader_lease, check_redis

        if lease is not None:
            check_leader_lease(lease, self.settings)
        return await check_redis(self.client)

    async def close_all(self, timeout_s: float | None = None) -> None:
        """Close workers and schedulers started through this manager, then the client.

        Never raises and never stops half-way. Workers and schedulers close side by side:
        each worker drains for ``timeout_s`` (default: ``Worker.close``'s) plus its bounded
        flush (``worker.core.CLOSE_BOUND_S``), each scheduler stops firing and releases its
        lease within ``CLOSER_BOUND_S`` (a lease Redis does not answer for is left to its
        TTL). Then the waiters and the client, each within ``CLOSER_BOUND_S``."""
        workers, self._workers = self._workers, []
        closers, self._closers = self._closers, []
        drains = [w.close() if timeout_s is None else w.close(timeout_s) for w in workers]
        await _all([*drains, *(_bounded(closer()) for closer in closers)])
        self._schedulers.clear()
        notices, self.cancel_notices = self.cancel_notices, None
        if notices is not None:
            await _bounded(notices.close())
        # Last: the workers' finishes needed the client.
        await _all([_bounded(self.waiters.close()), _bounded(self.client.aclose())])

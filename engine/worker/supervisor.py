"""The one place that decides what an unexpected failure of a worker's task does.

Every long-running task of a worker (the exchange driver, the lease keeper, stalled
recovery) runs under :class:`Supervisor`: an exception that escapes it is logged with its
traceback, counted, kept as the task's last error (``Worker.status()``, for health and
metrics), and the task is started again after a capped exponential backoff. A task that
returns normally is done. Cancellation (close) is never caught.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger("engine.worker")

_FIRST_RESTART_S = 0.05
# A task that ran this long before failing starts its backoff afresh.
_HEALTHY_RUN_S = 60.0


@dataclass(slots=True)
class TaskStatus:
    """What the supervisor knows of one task."""

    name: str
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None  # epoch seconds
    running: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "restarts": self.restarts,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "running": self.running,
        }


class Supervisor:
    """Starts named tasks and restarts them when they fail."""

    def __init__(self, owner: str, cap_s: float) -> None:
        self.owner = owner
        self.cap_s = cap_s
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.status: dict[str, TaskStatus] = {}

    def start(self, name: str, body: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        status = self.status.setdefault(name, TaskStatus(name))
        task = asyncio.create_task(self._supervise(status, body), name=f"{self.owner}:{name}")
        self.tasks[name] = task
        return task

    async def _supervise(self, status: TaskStatus, body: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            status.running = True
            started = time.monotonic()
            try:
                await body()
                return
            except Exception as exc:  # the one place a task's unexpected failure lands
                if time.monotonic() - started > _HEALTHY_RUN_S:
                    failures = 0
                failures += 1
                status.restarts += 1
                status.last_error = f"{type(exc).__name__}: {exc}"
                status.last_error_at = time.time()
                delay = min(self.cap_s, _FIRST_RESTART_S * 2 ** min(failures - 1, 20))
                logger.error(
                    "%s: task %s failed (%d restart(s) so far); restarting in %.2f s",
                    self.owner,
                    status.name,
                    status.restarts,
                    delay,
                    exc_info=exc,
                )
            finally:
                status.running = False
            await asyncio.sleep(delay * (0.5 + random.random() / 2))

    @property
    def restarts(self) -> int:
        return sum(s.restarts for s in self.status.values())

    async def cancel(self) -> None:
        """Cancel every task and wait for them to end."""
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""One claimed attempt of a job (its lease token, the task running it) and its outcome."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import raise_for_code
from ..job import Job

if TYPE_CHECKING:
    from ..pool import HandlerCall
    from .core import Worker

logger = logging.getLogger("engine.worker")


@dataclass(slots=True, eq=False)
class Attempt:
    """One claimed attempt of a job: its lease token and the task running it. Bound to
    the job as its runtime, so ``job.update_progress`` / ``job.log`` write under the
    attempt's lease."""

    worker: Worker
    job: Job
    token: str
    task: asyncio.Task[None] | None = None
    lost: bool = False
    released: bool = False
    # The handler call (set once started), and whether cancel_job ended this attempt
    # (engine/worker/cancel.py stops the call and drops its outcome).
    call: HandlerCall | None = None
    cancelled: bool = False

    async def update_progress(self, progress: Any) -> None:
        w = self.worker
        try:
            value = orjson.dumps(progress).decode()
        except TypeError as exc:
            raise ValueError(f"progress must be JSON-serialisable: {exc}") from None
        code = await w.store.scripts.update_progress(
            [w.keys.active, w.keys.events],
            [w.keys.job_prefix, self.job.id, self.token, value, w.store.max_events],
        )
        self._check(int(code), "progress update")

    async def log(self, text: str) -> None:
        w = self.worker
        code = await w.store.scripts.add_log(
            [w.keys.active],
            [w.keys.job_prefix, self.job.id, self.token, str(text), w.store.max_log_lines],
        )
        self._check(int(code), "log")

    def _check(self, code: int, action: str) -> None:
        if code == -2:
            logger.warning(
                "%s refused for job %s of queue %s: lease lost",
                action.capitalize(),
                self.job.id,
                self.job.queue,
            )
        raise_for_code(code, job_id=self.job.id, action=action)


@dataclass(slots=True)
class Finish:
    """The outcome of an attempt, kept until Redis has recorded it."""

    attempt: Attempt
    complete: bool
    args: list[str | int]
    delay_ms: int = -1
    reason: str = ""

"""One claimed attempt of a job (its lease token, the task running it) and its outcome."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
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
    # When the claim's reply came (monotonic s) and whether Redis has since confirmed it
    # (a claim holds `active` only for the claim deadline until confirmed).
    claimed_at: float = 0.0
    confirmed: bool = False
    _log_seq: int = 0
    _log_lock: asyncio.Lock | None = None
    # The handler call (set once started), and whether cancel_job ended this attempt
    # (engine/worker/cancel.py stops the call and drops its outcome).
    call: HandlerCall | None = None
    cancelled: bool = False

    @property
    def claimed_on(self) -> str:
        """When Redis claimed this attempt (ISO 8601, UTC, ms): which attempt of a job a
        log line is about (a worker may have lost one and claimed the next)."""
        ms = self.job.processed_on or 0
        whole = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{whole}.{ms % 1000:03d}Z"

    async def update_progress(self, progress: Any) -> None:
        try:
            value = orjson.dumps(progress).decode()
        except TypeError as exc:
            raise ValueError(f"progress must be JSON-serialisable: {exc}") from None
        code = await self.worker._calls.progress(self.job.id, self.token, value)
        self._check(int(code), "progress update")

    async def log(self, text: str) -> None:
        # One line at a time per attempt, each with its number: a resend of line n (the
        # client retries on a lost reply) is then recognised and not appended twice.
        if self._log_lock is None:
            self._log_lock = asyncio.Lock()
        async with self._log_lock:
            self._log_seq += 1
            code = await self.worker._calls.log(self.job.id, self.token, str(text), self._log_seq)
        self._check(int(code), "log")

    def _check(self, code: int, action: str) -> None:
        if code == -2:
            logger.warning(
                "%s refused for job %s of queue %s: lease lost (its attempt claimed at %s)",
                action.capitalize(),
                self.job.id,
                self.job.queue,
                self.claimed_on,
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
    # Sent before with an unknown outcome (its first copy may have been applied).
    resent: bool = False
    # Sent in a call of its own (a batch it was in hit a script error).
    alone: bool = False
    # The failure the engine records when the outcome itself could not be.
    quarantined: bool = False

"""Exceptions of the engine, and the one place where Lua error codes become them."""

from __future__ import annotations

from enum import IntEnum


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class QueueNotFound(EngineError, LookupError):
    """The queue is not known to this manager."""


class JobNotFound(EngineError, LookupError):
    """No job with that id in that queue."""


class LeaseLost(EngineError):
    """The caller's lease on a job (or the leader lease) is no longer valid."""


class ScheduleNotFound(EngineError, LookupError):
    """No schedule with that name in that queue."""


class InvalidJobState(EngineError):
    """The job is not in a state that allows the requested operation; ``state`` names the
    state it is in when the refusal knows it (a ``JobState`` value or ``orphaned``)."""

    def __init__(self, message: str, *, state: str = "") -> None:
        super().__init__(message)
        self.state = state


class JobNotCancellable(InvalidJobState):
    """A cancel found the job finished already; ``state`` says which (``completed``,
    ``failed``, or ``orphaned`` for a job found in no structure)."""

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(
            f"cancel refused: job {job_id} is {state or 'in no state'} (only waiting, "
            "delayed or active jobs can be cancelled)",
            state=state,
        )
        self.job_id = job_id


class UnrecoverableError(EngineError):
    """Raised by a processor to fail a job at once, without further attempts."""


class JobFailed(EngineError):
    """The job a caller waited for failed for good; ``reason`` is its failed reason."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id} failed: {reason}" if reason else f"job {job_id} failed")
        self.job_id = job_id
        self.reason = reason


class WaitTimeout(EngineError, TimeoutError):
    """A wait for a job's outcome ran out of time; the job itself goes on."""


class StartupCheckError(EngineError):
    """Redis or the configuration cannot be used safely; the message says why."""


class ReplicationTimeout(EngineError):
    """Fewer replicas than asked acknowledged a write within the WAIT timeout. The write
    is on the primary and may still be lost if it fails over now; ``job_ids`` names what
    was written (re-adding them with the same ids is a no-op if they survived)."""

    def __init__(self, message: str, *, acked: int, wanted: int, job_ids: list[str]) -> None:
        super().__init__(message)
        self.acked = acked
        self.wanted = wanted
        self.job_ids = job_ids


class ErrorCode(IntEnum):
    """Negative return codes of the Lua scripts (see ``engine/lua/*.lua``)."""

    JOB_NOT_FOUND = -1
    LEASE_LOST = -2
    NOT_IN_STATE = -3
    NOT_LEADER = -4
    SCHEDULE_CHANGED = -5
    NOT_DUE = -6


def raise_for_code(code: int, *, job_id: str = "", action: str = "", state: str = "") -> None:
    """Raise the typed exception for a negative script return code; no-op otherwise.
    ``state``: where the job is, when the script said (named by ``InvalidJobState``)."""
    if code >= 0:
        return
    what = f"job {job_id}" if job_id else "request"
    match code:
        case ErrorCode.JOB_NOT_FOUND:
            raise JobNotFound(f"{what} not found")
        case ErrorCode.LEASE_LOST:
            raise LeaseLost(f"{action or 'update'} refused: lease on {what} is no longer held")
        case ErrorCode.NOT_IN_STATE:
            where = f"is {state}" if state else "is not in that state"
            raise InvalidJobState(f"{action or 'operation'} refused: {what} {where}", state=state)
        case ErrorCode.NOT_LEADER:
            raise LeaseLost(f"{action or 'fire'} refused: not the current leader")
        case ErrorCode.SCHEDULE_CHANGED:
            raise EngineError(f"{action or 'fire'} refused: the schedule changed meanwhile")
        case ErrorCode.NOT_DUE:
            raise EngineError(f"{action or 'fire'} refused: the tick is not due yet")
        case _:
            raise EngineError(f"unexpected script code {code} for {what}")

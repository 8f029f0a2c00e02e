"""A job as read from Redis, and its JSON form in Bull's shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import orjson

from .errors import InvalidJobState
from .options import JobOptions

# Stored only when a job has another name: most jobs do not, and every byte counts.
DEFAULT_JOB_NAME = "__default__"


class JobState(StrEnum):
    """The set a job is in; a job is in exactly one at a time."""

    WAITING = "waiting"
    ACTIVE = "active"
    DELAYED = "delayed"
    COMPLETED = "completed"
    FAILED = "failed"
    # A job hash in none of the structures above: a lost job, never listed nor counted as a
    # state; Queue.check_consistency counts them.
    ORPHANED = "orphaned"


# The states a queue lists and counts (every one but ORPHANED, which no structure holds).
LISTED_STATES: tuple[JobState, ...] = tuple(s for s in JobState if s is not JobState.ORPHANED)


def _opt_int(value: str | None) -> int | None:
    return None if value is None or value == "" else int(value)


def _json(value: str | None, default: Any = None) -> Any:
    return default if value is None or value == "" else orjson.loads(value)


class UnreadableJob(ValueError):
    """A stored job field cannot be read (bad JSON, an invalid option value): ``field``
    names it. A worker fails such a job alone, without running it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"cannot read job field {field!r}: {problem}")
        self.field = field


def read_field(field: str, value: str | None, default: Any = None) -> Any:
    """The JSON value of a stored field; ``UnreadableJob`` naming it if it is not JSON."""
    try:
        return _json(value, default)
    except orjson.JSONDecodeError as exc:
        raise UnreadableJob(field, f"invalid JSON ({exc})") from None


def read_options(value: str | None) -> JobOptions:
    """The options stored in ``opts`` (unknown names ignored, see ``JobOptions.from_json``);
    ``UnreadableJob`` naming ``opts`` (and the option) if they cannot be used."""
    raw = read_field("opts", value, {})
    try:
        return JobOptions.from_json(raw)
    except ValueError as exc:
        raise UnreadableJob("opts", str(exc)) from None


def read_int(field: str, value: str | None, default: int = 0) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UnreadableJob(field, f"not an integer: {value[:50]!r}") from None


class JobRuntime(Protocol):
    """What a worker binds to a job it runs (see ``engine/worker/attempt.py``)."""

    async def update_progress(self, progress: Any) -> None: ...

    async def log(self, text: str) -> None: ...


@dataclass(slots=True)
class Job:
    """One job. Times are epoch ms (Redis server clock).

    Inside a handler, ``update_progress`` and ``log`` write to Redis under the attempt's
    lease: a worker that lost the lease gets ``LeaseLost`` and changes nothing.
    """

    id: str
    queue: str
    name: str
    data: Any
    opts: JobOptions
    timestamp: int
    attempts_made: int = 0
    stalled_count: int = 0
    progress: Any = 0
    processed_on: int | None = None
    finished_on: int | None = None
    failed_reason: str | None = None
    stacktrace: list[str] = field(default_factory=list)
    return_value: Any = None
    state: JobState | None = None
    # True on the Job an add returned instead of adding one: the add's deduplication id
    # was held by this job (engine/dedup.py). Not stored: a fact about that add.
    deduplicated: bool = field(default=False, compare=False)
    _runtime: JobRuntime | None = field(default=None, repr=False, compare=False)
    # Set by the Queue that produced this object: how to wait for the job's outcome.
    _waiter: Callable[[str, float | None], Awaitable[Any]] | None = field(
        default=None, repr=False, compare=False
    )

    async def wait(self, timeout_s: float | None = None) -> Any:
        """The handler's return value once this job completes (BullMQ's
        ``waitUntilFinished``, arq's ``job.result()``), whichever instance runs it.

        Raises ``JobFailed`` with the reason if it fails for good, ``JobNotFound`` if it
        is removed, ``WaitTimeout`` after ``timeout_s`` (the job itself goes on)."""
        if self._waiter is None:
            raise InvalidJobState(
                f"cannot wait: job {self.id} was not obtained from a QueueManager's queue"
            )
        return await self._waiter(self.id, timeout_s)

    async def update_progress(self, progress: Any) -> None:
        """Set the progress of this running job: 0..100 or any JSON value (event
        ``progress``)."""
        await self._bound("update progress").update_progress(progress)
        self.progress = progress

    async def log(self, text: str) -> None:
        """Append a line to this running job's log (capped to the newest lines)."""
        await self._bound("log").log(text)

    def _bound(self, action: str) -> JobRuntime:
        if self._runtime is None:
            raise InvalidJobState(f"cannot {action}: job {self.id} is not running in this process")
        return self._runtime

    @classmethod
    def from_hash(
        cls, queue: str, job_id: str, h: Mapping[str, str], state: JobState | None = None
    ) -> Job:
        """Build from the fields of ``job:<id>`` (see docs/ARCHITECTURE.md). A field that
        cannot be read never makes the job unreadable: ``data`` is then its raw text and
        ``opts`` the defaults (a worker fails such a job, naming the field)."""
        try:
            data = read_field("data", h.get("data"))
        except UnreadableJob:
            data = h.get("data")
        try:
            opts = read_options(h.get("opts"))
        except UnreadableJob:
            opts = JobOptions()
        return cls(
            id=job_id,
            queue=queue,
            name=h.get("name", DEFAULT_JOB_NAME),
            data=data,
            opts=opts,
            timestamp=int(h.get("ts", 0)),
            attempts_made=int(h.get("atm", 0)),
            stalled_count=int(h.get("stc", 0)),
            progress=_json(h.get("prog"), 0),
            processed_on=_opt_int(h.get("pon")),
            finished_on=_opt_int(h.get("fon")),
            failed_reason=h.get("fr"),
            stacktrace=_json(h.get("st"), []),
            return_value=_json(h.get("rv")),
            state=state,
        )

    def to_json(self) -> dict[str, Any]:
        """Bull's JSON shape for a job, plus ``state`` and ``stalledCount``."""
        return {
            "id": self.id,
            "name": self.name,
            "data": self.data,
            "opts": self.opts.to_json(),
            "progress": self.progress,
            "attemptsMade": self.attempts_made,
            "stalledCount": self.stalled_count,
            "failedReason": self.failed_reason,
            "stacktrace": self.stacktrace,
            "returnvalue": self.return_value,
            "timestamp": self.timestamp,
            "processedOn": self.processed_on,
            "finishedOn": self.finished_on,
            "state": None if self.state is None else self.state.value,
        }

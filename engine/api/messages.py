"""Operator-facing text and the reply bodies the API and the CLI share.

One rule: operator-facing text is English everywhere (API success and error messages, CLI,
dashboard, logs). The seed's Spanish examples ("Sincronización SERPRAM iniciada") became
their English equivalents; the JSON field names and shapes of the seed are unchanged.
The CLI prints these same bodies, so its output is the API's JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..job import Job
from ..queue import MAX_PAGE

# What each job action needs, for the 409 that names the state the job is actually in.
ACTION_NEEDS = {
    "retry": ("retried", "only failed jobs can be retried"),
    "promote": ("promoted", "only delayed jobs can be promoted"),
    "remove": ("removed", "an active job cannot be removed"),
    "cancel": ("cancelled", "only waiting, delayed or active jobs can be cancelled"),
}


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def run_started(label: str) -> str:
    return f"{label} sync started"


def state_conflict(job_id: str, action: str, state: str | None) -> str:
    """``job 7 is completed: only failed jobs can be retried``."""
    _, rule = ACTION_NEEDS[action]
    where = f"is {state}" if state else "is in no state that allows this"
    return f"job {job_id} {where}: {rule}"


def run_body(label: str, job_id: str, queue: str) -> dict[str, Any]:
    return {"message": run_started(label), "jobId": job_id, "queue": queue}


def pause_body(queue: str, paused: bool, changed: bool) -> dict[str, Any]:
    verb = "paused" if paused else "resumed"
    note = "" if changed else f" (it was already {verb})"
    return {
        "message": f"Queue {queue} {verb}{note}",
        "queue": queue,
        "paused": paused,
        "changed": changed,
    }


def clean_body(queue: str, state: str, grace_ms: int, removed: int) -> dict[str, Any]:
    return {
        "message": f"{plural(removed, f'{state} job')} removed from {queue}",
        "queue": queue,
        "state": state,
        "gracePeriod": grace_ms,
        "removed": removed,
    }


def job_action_body(queue: str, job_id: str, action: str) -> dict[str, Any]:
    done, _ = ACTION_NEEDS[action]
    return {"message": f"Job {job_id} {done}", "queue": queue, "jobId": job_id}


def cancel_body(queue: str, job_id: str, was: str) -> dict[str, Any]:
    """A cancel's reply: the job is failed now; ``was`` is the state it was cancelled in
    (a running job's handler is being stopped on the instance that runs it)."""
    note = ": its handler is being stopped" if was == "active" else ""
    return {
        "message": f"Job {job_id} cancelled (it was {was}){note}",
        "queue": queue,
        "jobId": job_id,
        "state": "failed",
        "was": was,
    }


def page_end(start: int, asked: int) -> int:
    """The last index served for ``start..asked``: a range past one page stops at
    ``start + MAX_PAGE - 1`` (the reply's ``end`` says so) rather than being refused."""
    return min(asked, start + MAX_PAGE - 1)


def jobs_body(queue: str, state: str, start: int, end: int, jobs: Sequence[Job]) -> dict[str, Any]:
    return {
        "queue": queue,
        "state": state,
        "start": start,
        "end": end,
        "count": len(jobs),
        "jobs": [job.to_json() for job in jobs],
    }

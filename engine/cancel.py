"""Cancelling a job (the admin side): one script call fails it at once, wherever it is.

A waiting, prioritized or delayed job goes to ``failed`` and is never claimed. A running
job goes to ``failed`` in the same atomic step, so the outcome does not depend on the
worker that runs it being alive; that worker then stops the handler (see
``engine/worker/cancel.py``) and its late finish, if any, changes nothing. Either way the
reason is ``cancelled by <actor>`` and the job is not retried, whatever ``attempts`` says.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .errors import ErrorCode, JobNotCancellable, JobNotFound
from .job import JobState
from .keys import new_request_id
from .options import DEFAULT_KEEP_FAILED

if TYPE_CHECKING:
    from .queue import Queue

logger = logging.getLogger("engine.queue")

# Most other failed jobs one cancel removes under the job's retention (as a worker's fail);
# the retention itself is the job's removeOnFail, read from its options by the script.
RETENTION_BATCH = 1000
MAX_ACTOR_CHARS = 200


def cancel_reason(actor: str) -> str:
    """``cancelled by <actor>``, or ``cancelled`` when nobody is named."""
    return f"cancelled by {actor[:MAX_ACTOR_CHARS]}" if actor else "cancelled"


def cancel_call(
    queue: Queue, job_id: str, actor: str, request_id: str
) -> tuple[list[str], list[str | int]]:
    """The keys and arguments of one ``cancel_job`` script call (its request record is
    ``request_id``: a resend with the same id returns the first copy's reply)."""
    k = queue.keys
    store = queue.store
    keys = [
        k.wait,
        k.prioritized,
        k.active,
        k.delayed,
        k.completed,
        k.failed,
        k.events,
        k.claims,
        k.job(job_id),
        k.request(request_id),
    ]
    args: list[str | int] = [
        k.job_prefix,
        job_id,
        cancel_reason(actor),
        actor,
        store.max_events,
        store.resend_window_ms,
        k.cancel_channel,
        DEFAULT_KEEP_FAILED,
        RETENTION_BATCH,
    ]
    return keys, args


async def cancel_job(queue: Queue, job_id: str, actor: str = "") -> JobState:
    """Cancel job ``job_id`` of ``queue``; returns the state it was in (``waiting``,
    ``delayed`` or ``active``). Raises ``JobNotFound``, or ``JobNotCancellable`` (an
    ``InvalidJobState`` naming the state) for a job that has finished already."""
    job_id = str(job_id)
    keys, args = cancel_call(queue, job_id, actor, new_request_id())
    code, state = (await queue.store.scripts.cancel_job(keys, args))[:2]
    if int(code) == ErrorCode.JOB_NOT_FOUND:
        raise JobNotFound(f"job {job_id} not found")
    if int(code) < 0:
        raise JobNotCancellable(job_id, str(state))
    logger.info(
        "Job %s of queue %s cancelled%s (it was %s)",
        job_id,
        queue.name,
        f" by {actor}" if actor else "",
        state,
    )
    return JobState(state)

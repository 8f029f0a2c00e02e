"""The worker's script calls as the Lua tests make them (engine/worker/calls.py builds
their KEYS and ARGV, so the tests call the scripts exactly as the worker does)."""

from __future__ import annotations

from typing import Any

from engine import Queue
from engine.keys import new_request_id
from engine.worker.calls import WorkerCalls


def calls(q: Queue) -> WorkerCalls:
    return WorkerCalls(q.store, q.keys)


def claim_reply(
    q: Queue,
    count: int = 10,
    worker: str = "w1",
    claim_ms: int = 30_000,
    *,
    rate: tuple[int, int] = (0, 0),
    promote: int = 1000,
    request_id: str | None = None,
) -> Any:
    """move_to_active's whole reply: {now, paused, limited, next due, jobs, ready}."""
    return calls(q).claim(
        worker_id=worker,
        request_id=request_id or new_request_id(),
        count=count,
        claim_ms=claim_ms,
        rate=rate,
        promote_batch=promote,
    )


async def claim(q: Queue, count: int = 10, worker: str = "w1", claim_ms: int = 30_000) -> list[Any]:
    """The jobs claimed: [id, token, name, data, opts, atm, ts, stc, prog] each."""
    return list((await claim_reply(q, count, worker, claim_ms))[4])

"""Stopping background tasks for sure.

``task.cancel()`` once is not enough: on Python 3.11 a cancellation that lands while an
inner ``asyncio.timeout`` (redis-py's read timeout) expires can come out as a
``TimeoutError``, which redis-py's retry then answers by sending the command again, so the
task swallows the cancel and runs on. Seen: an event feed kept reading after SIGTERM and the
service never exited. :func:`stop_task` cancels again until the task ends, within a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

logger = logging.getLogger("engine.tasks")

_RECANCEL_S = 0.05


async def stop_task(task: asyncio.Task[object] | None, timeout_s: float = 5.0) -> bool:
    """Cancel ``task`` and wait until it ends, cancelling again every 50 ms (a cancel can be
    swallowed, see above). Returns whether it ended within ``timeout_s``; an exception it
    ends with is logged, never raised."""
    if task is None:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            logger.warning("Task %s did not stop within %.1f s", task.get_name(), timeout_s)
            return False
        await asyncio.wait({task}, timeout=min(_RECANCEL_S, remaining))
    if not task.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            exc = task.exception()
            if exc is not None:
                logger.warning("Task %s ended with %r", task.get_name(), exc)
    return True


__all__ = ["stop_task"]

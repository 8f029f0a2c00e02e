"""Stopping one handler call in a process pool (a cancelled job), without the whole pool.

``ProcessPoolExecutor`` does not say which child runs a call, and a child that dies breaks
the pool: every call in it fails. So a cancel first stops the *call* and keeps the child:

- Each pool gets a :class:`ChildCalls`: one spawn-context shared array, handed to every
  child by the pool's initializer, holding a ring of call ids asked to stop and a table of
  (call id, pid) of the calls running now, both under the array's lock.
- A child, before it runs call X, checks the ring (X asked to stop: it raises at once) and
  enters (X, its pid) in the table; after the call it clears its entry.
- To stop X the parent puts X in the ring and reads X's pid under the same lock, then sends
  that child ``SIGUSR1``. The child's signal handler raises :class:`HandlerCancelled` if
  the call it runs is in the ring. Whether X started before the request (the parent finds
  its pid) or after (the child finds X in the ring), X stops.

``HandlerCancelled`` is a ``BaseException`` (so a handler's ``except Exception`` does not
swallow it) that ends the call like any other exception: the child lives on, the pool
stays whole, the other jobs in it never notice. A handler that does not stop (stuck in C
code, or catching ``BaseException``) is killed ``STOP_GRACE_S`` later: that breaks the
pool, whose other running calls then fail too (``pool.py`` replaces the pool), the price
of stopping a call that refuses to stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

logger = logging.getLogger("engine.worker")

STOP_GRACE_S = 3.0
_RING = 64  # call ids asked to stop, the newest kept; a child reads it within ms
_LOCK_S = 0.5  # children hold the lock for microseconds; never block the loop long
_STOP_SIGNAL = signal.SIGUSR1

# -- in the child ---------------------------------------------------------------------

_shared: Any = None
_current = 0


class HandlerCancelled(BaseException):
    """Raised inside a pool child to stop the call of a cancelled job."""


def init_child(shared: Any) -> None:
    """The pool's initializer: keep the shared array, listen for stop requests."""
    global _shared
    _shared = shared
    signal.signal(_STOP_SIGNAL, _on_stop_signal)


def _asked(raw: Any, call_id: int) -> bool:
    return call_id in raw[1 : 1 + _RING]


def _on_stop_signal(_signum: int, _frame: Any) -> None:
    current = _current
    if current and _shared is not None:
        with _shared.get_lock():  # an RLock: safe if the interrupted code holds it
            asked = _asked(_shared.get_obj(), current)
        if asked:
            raise HandlerCancelled(f"call {current} stopped: its job was cancelled")


def run_call(call_id: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` as call ``call_id`` of this child (see the module doc)."""
    global _current
    _current = call_id  # before entering: a signal from now on finds the call
    try:
        if _shared is not None:
            _enter(call_id)
        return fn(*args)
    finally:
        _current = 0
        if _shared is not None:
            _leave(call_id)


def _enter(call_id: int) -> None:
    pid = os.getpid()
    with _shared.get_lock():
        raw = _shared.get_obj()
        if _asked(raw, call_id):
            raise HandlerCancelled(f"call {call_id} stopped before it started")
        free = None
        for i in range(1 + _RING, len(raw), 2):
            if raw[i + 1] == pid or (free is None and raw[i] == 0):
                free = i
                if raw[i + 1] == pid:
                    break
        if free is not None:
            raw[free], raw[free + 1] = call_id, pid


def _leave(call_id: int) -> None:
    with _shared.get_lock():
        raw = _shared.get_obj()
        for i in range(1 + _RING, len(raw), 2):
            if raw[i] == call_id:
                raw[i], raw[i + 1] = 0, 0


# -- in the parent --------------------------------------------------------------------


class ChildCalls:
    """The shared table of one pool (create it with the pool, pass :meth:`initargs`)."""

    def __init__(self, ctx: Any, processes: int) -> None:
        # Twice the children: an entry a killed child left behind never blocks a new one.
        self.shared = ctx.Array("q", 1 + _RING + 4 * processes)

    def initargs(self) -> tuple[Any, ...]:
        return (self.shared,)

    def _locked(self, call_id: int, ask: bool) -> int | None:
        lock = self.shared.get_lock()
        if not lock.acquire(timeout=_LOCK_S):
            return None
        try:
            raw = self.shared.get_obj()
            if ask:
                position = raw[0]
                raw[1 + position % _RING] = call_id
                raw[0] = position + 1
            for i in range(1 + _RING, len(raw), 2):
                if raw[i] == call_id:
                    return int(raw[i + 1])
            return None
        finally:
            lock.release()

    def request_stop(self, call_id: int) -> int | None:
        """Ask call ``call_id`` to stop; the pid of the child running it, if it runs."""
        return self._locked(call_id, ask=True)

    def pid_of(self, call_id: int) -> int | None:
        return self._locked(call_id, ask=False)


def _signal(pool: ProcessPoolExecutor, pid: int | None, sig: int) -> bool:
    # Only a live child of this very pool: never a pid the system has reused since.
    processes = getattr(pool, "_processes", None) or {}
    if pid is None or pid not in processes:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop(
    pool: ProcessPoolExecutor, calls: ChildCalls, call_id: int, running: Callable[[], bool]
) -> None:
    """Stop call ``call_id`` (see the module doc); kill its child if it is still running
    ``STOP_GRACE_S`` later. ``running`` says whether the call has ended meanwhile."""
    _signal(pool, calls.request_stop(call_id), _STOP_SIGNAL)

    def escalate() -> None:
        if not running():
            return
        pid = calls.pid_of(call_id)
        if _signal(pool, pid, signal.SIGKILL):
            logger.warning(
                "A cancelled handler in pool child %s ignored its stop request for %.0f s: "
                "child killed (the pool is replaced; calls running in it fail)",
                pid,
                STOP_GRACE_S,
            )

    asyncio.get_running_loop().call_later(STOP_GRACE_S, escalate)

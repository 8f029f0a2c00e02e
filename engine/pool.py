"""Where a handler runs: on the event loop, in a thread, or in a pool of processes.

A coroutine function runs on the loop. A plain function runs in a thread so it never
blocks the loop that renews leases. With a process pool, every handler runs in a child
process (it must be importable, e.g. a module-level function): a CPU-bound job then
cannot starve the loop either, which is what causes false stalls in peers.

A thread cannot be stopped, nor a child on a timeout: a call that timed out runs on. A
cancelled job's child call is stopped (``HandlerCall.interrupt``, ``engine/children.py``).
Each call is a :class:`HandlerCall` that says when the handler really started (a job's
timeout counts from then) and when it really ended (its slot is busy until then).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import inspect
import itertools
import multiprocessing
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from . import children
from .children import ChildCalls
from .job import Job

Handler = Callable[[Job], Awaitable[Any]] | Callable[[Job], Any]


def is_async(handler: Handler) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
    return inspect.iscoroutinefunction(call)


def _call_in_child(handler: Handler, job: Job) -> Any:
    result = handler(job)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _threadsafe(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    # A closed loop: nobody waits for this call any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


class HandlerCall:
    """One call of the handler for one job.

    ``started`` is set when the handler is really running (for a thread: when the thread
    enters it; a coroutine or a child call: at once). ``outcome`` is its result; cancelling
    it cancels a coroutine (which may ignore it) but not a thread or a child, which run on:
    ``running`` stays true and ``on_end`` callbacks fire only when the call really ends.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.started = asyncio.Event()
        self.running = True
        self._on_end: list[Callable[[], None]] = []
        self.outcome: asyncio.Future[Any] = loop.create_future()
        self._interrupt: Callable[[], None] | None = None

    def _ended(self) -> None:
        if not self.running:
            return
        self.running = False
        callbacks, self._on_end = self._on_end, []
        for callback in callbacks:
            callback()

    def _ended_threadsafe(self) -> None:
        _threadsafe(self._loop, self._ended)

    def _started_threadsafe(self) -> None:
        _threadsafe(self._loop, self.started.set)

    def interrupt(self) -> None:
        """Stop a child call (a cancelled job, see ``engine/children.py``); a coroutine is
        stopped by cancelling ``outcome``, a thread cannot be stopped."""
        if self._interrupt is not None and self.running:
            self._interrupt()

    def on_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the handler has really ended (now if it has)."""
        if self.running:
            self._on_end.append(callback)
        else:
            callback()


class HandlerRunner:
    """Calls one handler for each job, in the place its kind and the options ask for."""

    def __init__(self, handler: Handler, *, threads: int, processes: int | None) -> None:
        if not callable(handler):
            raise ValueError(f"handler must be callable, got {type(handler).__name__}")
        self.handler = handler
        self._async = is_async(handler)
        self._processes = processes
        self._threads: ThreadPoolExecutor | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._calls: ChildCalls | None = None  # the current pool's (children.py)
        self._call_ids = itertools.count(1)
        if processes is None and not self._async:
            self._threads = ThreadPoolExecutor(threads, thread_name_prefix="engine-handler")
        if processes is not None:
            self._pool = self._new_pool()

    @property
    def kind(self) -> str:
        """``process``, ``coroutine`` or ``thread``."""
        if self._pool is not None:
            return "process"
        return "coroutine" if self._async else "thread"

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: forking a process that runs an event loop and threads is unsafe.
        ctx = multiprocessing.get_context("spawn")
        assert self._processes is not None
        self._calls = ChildCalls(ctx, self._processes)
        return ProcessPoolExecutor(
            self._processes,
            mp_context=ctx,
            initializer=children.init_child,
            initargs=self._calls.initargs(),
        )

    def call(self, job: Job) -> HandlerCall:
        """Start the handler for ``job``; raises whatever submitting it raises."""
        loop = asyncio.get_running_loop()
        call = HandlerCall(loop)
        if self._pool is not None:
            pool, calls, call_id = self._pool, self._calls, next(self._call_ids)
            assert calls is not None
            child_job = dataclasses.replace(job, _runtime=None)
            future = pool.submit(
                children.run_call, call_id, _call_in_child, self.handler, child_job
            )
            call.started.set()
            call._interrupt = lambda: children.stop(pool, calls, call_id, lambda: call.running)
            future.add_done_callback(
                lambda f: _threadsafe(loop, lambda: self._child_ended(pool, f, call))
            )
            call.outcome = asyncio.wrap_future(future, loop=loop)
        elif self._async:
            call.started.set()
            task = asyncio.ensure_future(self.handler(job))
            task.add_done_callback(lambda _: call._ended())
            call.outcome = task
        else:
            assert self._threads is not None

            def run() -> Any:
                call._started_threadsafe()
                return self.handler(job)

            future = self._threads.submit(run)
            future.add_done_callback(lambda _: call._ended_threadsafe())
            call.outcome = asyncio.wrap_future(future, loop=loop)
        return call

    def _child_ended(
        self, pool: ProcessPoolExecutor, future: concurrent.futures.Future[Any], call: HandlerCall
    ) -> None:
        broken = not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)
        if broken and self._pool is pool:
            # A child died (OOM, segfault, os._exit): this attempt fails, the next ones
            # get a fresh pool.
            self._pool = self._new_pool()
            pool.shutdown(wait=False, cancel_futures=True)
        call._ended()

    async def __call__(self, job: Job) -> Any:
        """Run the handler for ``job`` and return its result (cancelling cancels a
        coroutine; a thread or child runs on)."""
        call = self.call(job)
        await call.started.wait()
        return await call.outcome

    def shutdown(self) -> None:
        """Stop accepting work; calls still running in threads or children finish alone."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

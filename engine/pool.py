"""Where a handler runs: on the event loop, in a thread, or in a pool of processes.

A coroutine function runs on the loop. A plain function runs in a thread so it never
blocks the loop that renews leases. With a process pool, every handler runs in a child
process (it must be importable, e.g. a module-level function): a CPU-bound job then
cannot starve the loop either, which is what causes false stalls in peers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import multiprocessing
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

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
        if processes is None and not self._async:
            self._threads = ThreadPoolExecutor(threads, thread_name_prefix="engine-handler")
        if processes is not None:
            self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: forking a process that runs an event loop and threads is unsafe.
        return ProcessPoolExecutor(self._processes, mp_context=multiprocessing.get_context("spawn"))

    async def __call__(self, job: Job) -> Any:
        if self._pool is not None:
            pool = self._pool
            loop = asyncio.get_running_loop()
            child_job = dataclasses.replace(job, _runtime=None)
            try:
                return await loop.run_in_executor(pool, _call_in_child, self.handler, child_job)
            except BrokenProcessPool:
                # A child died (OOM, segfault, os._exit): this attempt fails, the next
                # ones get a fresh pool.
                if self._pool is pool:
                    self._pool = self._new_pool()
                    pool.shutdown(wait=False, cancel_futures=True)
                raise
        if self._async:
            return await self.handler(job)
        loop = asyncio.get_running_loop()
        executor: Executor | None = self._threads
        return await loop.run_in_executor(executor, self.handler, job)

    def shutdown(self) -> None:
        """Stop accepting work; calls still running in threads or children finish alone."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

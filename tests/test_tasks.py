"""stop_task: a background task stops even when it swallows a cancellation, as a redis-py
call does when the cancel races its read timeout (the timeout becomes a TimeoutError and
the client retries the command)."""

from __future__ import annotations

import asyncio

from engine.tasks import stop_task


async def _loop_that_swallows_one_cancel(ticks: list[int]) -> None:
    swallowed = False
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True  # what redis-py's retry does with a cancel turned timeout
        ticks.append(1)


async def test_a_single_cancel_leaves_such_a_task_running() -> None:
    ticks: list[int] = []
    task = asyncio.create_task(_loop_that_swallows_one_cancel(ticks))
    await asyncio.sleep(0.03)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done  # the old stop (cancel once, await) would wait forever here
    assert await stop_task(task)


async def test_stop_task_ends_a_task_that_swallows_a_cancel() -> None:
    ticks: list[int] = []
    task = asyncio.create_task(_loop_that_swallows_one_cancel(ticks))
    await asyncio.sleep(0.03)
    assert await stop_task(task, timeout_s=5)
    assert task.cancelled()


async def test_stop_task_gives_up_within_its_bound_and_says_so(caplog) -> None:  # type: ignore[no-untyped-def]
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert not await stop_task(task, timeout_s=0.2)
    assert "did not stop" in caplog.text
    release.set()  # leave nothing running behind the test
    task.cancel()
    await task


async def test_stop_task_of_nothing_or_a_finished_task_is_a_no_op() -> None:
    assert await stop_task(None)
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    assert await stop_task(done)

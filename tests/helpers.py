"""Small test utilities: polling with a deadline instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Bull's JSON shape of a job (SEED.md's listings), which Job.to_json() and the API keep.
BULL_JOB_FIELDS = frozenset(
    {
        "id",
        "name",
        "data",
        "opts",
        "progress",
        "attemptsMade",
        "failedReason",
        "stacktrace",
        "returnvalue",
        "timestamp",
        "processedOn",
        "finishedOn",
    }
)


async def wait_for(
    predicate: Callable[[], Awaitable[T]], timeout_s: float = 10.0, interval_s: float = 0.01
) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last value: {last!r})")


def crc16_slot(key: str) -> int:
    """Redis Cluster's key slot (CRC16/XMODEM of the hash tag, mod 16384)."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


async def waiting_ids(client: Any, keys: Any) -> list[str]:
    """Waiting job ids in claim order: the ``wait`` list (no priority, FIFO), then the
    ``prioritized`` zset."""
    return [
        *await client.lrange(keys.wait, 0, -1),
        *await client.zrange(keys.prioritized, 0, -1),
    ]


async def unwait(client: Any, keys: Any, job_id: str) -> None:
    """Take a job off waiting (from whichever structure holds it), as a test shortcut."""
    await client.lrem(keys.wait, 0, job_id)
    await client.zrem(keys.prioritized, job_id)

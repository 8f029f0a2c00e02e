"""Enqueue throughput: one by one, 50 concurrent producers on one client, and bulk."""

from __future__ import annotations

import time

from bench.harness import Bench, payloads
from bench.peers.base import NotSupported

SCENARIO = "enqueue"
BULK_BATCH = 1000


async def run(bench: Bench) -> None:
    n = bench.profile.enqueue_jobs

    async def body(system: str) -> None:
        s = bench.make(system)
        await s.open()
        try:
            start = time.perf_counter()
            for data in payloads(n):
                await s.enqueue(data)
            rate: float | None = n / (time.perf_counter() - start)
            bench.record(SCENARIO, "one_by_one", "enqueue one by one", "jobs/s", system, rate)

            await bench.flush()
            try:
                start = time.perf_counter()
                await s.enqueue_concurrent(payloads(n), width=50)
                rate = n / (time.perf_counter() - start)
            except NotSupported:
                rate = None
            bench.record(SCENARIO, "concurrent", "enqueue 50 concurrent", "jobs/s", system, rate)

            await bench.flush()
            bulk_n = n * 4
            datas = payloads(bulk_n)
            try:
                start = time.perf_counter()
                for i in range(0, bulk_n, BULK_BATCH):
                    await s.enqueue_bulk(datas[i : i + BULK_BATCH])
                rate = bulk_n / (time.perf_counter() - start)
            except NotSupported:
                rate = None
            bench.record(SCENARIO, "bulk", f"enqueue bulk ({BULK_BATCH})", "jobs/s", system, rate)
        finally:
            await s.close()

    await bench.rounds(body)

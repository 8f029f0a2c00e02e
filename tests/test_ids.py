"""Generated job ids are reserved in blocks before sending (engine/ids.py)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from engine import QueueManager
from engine.ids import ID_BLOCK
from tests.redis_servers import RedisServer


async def _hincrby_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_hincrby", {}).get("calls", 0))


async def test_ids_ascend_and_cost_one_reservation_per_block(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    await client.config_resetstat()
    jobs = [await q.add(i) for i in range(ID_BLOCK + 1)]
    ids = [int(j.id) for j in jobs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert await _hincrby_calls(client) == 2
    # Concurrent adds short of ids wait for the one reservation on the wire.
    await client.config_resetstat()
    many = await asyncio.gather(*(q.add(i) for i in range(ID_BLOCK)))
    assert len({j.id for j in many}) == ID_BLOCK
    assert await _hincrby_calls(client) == 1


async def test_two_producers_of_one_queue_never_share_an_id(
    redis_server: RedisServer, prefix: str
) -> None:
    managers = [QueueManager(redis_server.url, prefix=prefix) for _ in range(2)]
    try:
        queues = [m.create_queue("q") for m in managers]
        batches = await asyncio.gather(
            *(q.add_bulk([{"data": i} for i in range(150)]) for q in queues),
            *(queues[i % 2].add(i) for i in range(60)),
        )
        ids = [j.id for b in batches for j in (b if isinstance(b, list) else [b])]
        assert len(ids) == 360 and len(set(ids)) == 360
        assert (await queues[0].get_stats()).waiting == 360
    finally:
        for m in managers:
            await m.close_all()

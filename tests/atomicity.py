"""Error-atomicity harness: a script call that Redis refuses, at any point, leaves Redis
unchanged (issue 11, item 4).

Redis does not roll back a script that fails midway: the writes before the failing call
stay. So every engine script declares every key it touches (Redis, and a Cluster whose slot
is half migrated, then refuses the call before it runs) and reads and checks everything
before its first write. This harness proves it for one engine call at a time:

- :func:`snapshot` reads every key of a queue's slot (every node that may hold some:
  during a migration, keys sit on the source and the target) into plain values;
- :func:`assert_refused_unchanged` snapshots, runs the call, checks that it raised one of
  the expected errors, snapshots again and fails with a readable diff if anything changed;
- :func:`assert_atomic_under_refusals` does that under ``OOM`` (maxmemory) and
  ``NOREPLICAS`` (min-replicas-to-write 1, no replica) on a single server;
- :func:`assert_atomic_mid_migration` does it on a real Cluster with the queue's slot
  half migrated, once per point: each single key of the slot moved alone, then the first
  1, 2, ... n keys (sorted) moved. The call goes through a plain client connected to the
  slot's source node, exactly what a Cluster client sends there first; so an ASK or
  TRYAGAIN refusal reaches the call, and a script that passed the slot check on its
  declared keys but touches an undeclared, moved one fails midway, as in the issue.

Usage (see tests/test_atomicity.py)::

    async def call(queue: Queue) -> None:
        await queue.retry_job("1")

    await assert_atomic_under_refusals(server, make_queue, setup, call)
    await assert_atomic_mid_migration(cluster, queue_name, prefix, setup, call)

where ``make_queue(client)`` builds the engine object on a given client and ``setup``
brings the queue to the state before the call (on an unrefused connection).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from engine import Queue
from engine.store import Store
from tests.faults.real import half_migrated_slot, no_replicas, out_of_memory
from tests.helpers import crc16_slot
from tests.redis_servers import RedisCluster, RedisServer, slot_owner

Snapshot = dict[str, tuple[str, Any]]
Setup = Callable[[Queue], Awaitable[None]]
Call = Callable[[Queue], Awaitable[Any]]


def _read(client: Any, key: str, asking: bool) -> tuple[str, Any]:
    """One key as (type, value[, has TTL]) in plain Python values."""

    def run(*command: Any) -> Any:
        if not asking:
            return client.execute_command(*command)
        with client.pipeline(transaction=False) as pipe:
            pipe.execute_command("ASKING")
            pipe.execute_command(*command)
            return pipe.execute()[1]

    kind = run("TYPE", key)
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    value: Any
    if kind == "string":
        value = run("GET", key)
    elif kind == "hash":
        flat = run("HGETALL", key)
        value = sorted(flat.items()) if isinstance(flat, dict) else flat
    elif kind == "list":
        value = run("LRANGE", key, 0, -1)
    elif kind == "set":
        value = sorted(run("SMEMBERS", key))
    elif kind == "zset":
        value = run("ZRANGE", key, 0, -1, "WITHSCORES")
    elif kind == "stream":
        value = [(eid, sorted(fields.items()) if isinstance(fields, dict) else fields)
                 for eid, fields in run("XRANGE", key, "-", "+")]  # fmt: skip
    else:
        value = None
    has_ttl = int(run("PTTL", key)) >= 0
    return kind, (value, has_ttl)


def snapshot(nodes: Sequence[RedisServer], prefix: str, *, slot: int | None = None) -> Snapshot:
    """Every key starting with ``prefix`` on ``nodes``; with ``slot`` (a Cluster), the keys
    each node holds in that slot (read with ASKING, so an importing node answers)."""
    found: Snapshot = {}
    for node in nodes:
        # Raw bytes: values may be binary (a request record is MessagePack).
        client = redis.Redis(host="127.0.0.1", port=node.port, decode_responses=False)
        try:
            if slot is None:
                keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            else:
                keys = client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100_000)
            for raw in keys:
                key = raw.decode()
                if not key.startswith(prefix):
                    continue
                if key in found:
                    raise AssertionError(f"{key} is on two nodes at once")
                found[key] = _read(client, key, asking=slot is not None)
        finally:
            client.close()
    return found


def diff(before: Snapshot, after: Snapshot) -> str:
    """What changed, one line per key."""
    lines = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            lines.append(f"- {key} deleted (was {before[key]!r})")
        elif key not in before:
            lines.append(f"+ {key} created: {after[key]!r}")
        elif before[key] != after[key]:
            lines.append(f"~ {key}: {before[key]!r} -> {after[key]!r}")
    return "\n".join(lines)


async def assert_refused_unchanged(
    call: Callable[[], Awaitable[Any]],
    take: Callable[[], Snapshot],
    refused: tuple[type[BaseException], ...] = (RedisError,),
    what: str = "",
    *,
    may_apply: bool = False,
) -> BaseException | None:
    """Run ``call``: if it raises one of ``refused``, nothing ``take`` sees may have
    changed; returns the error. A call that goes through returns ``None`` if ``may_apply``
    (Redis lets a script whose first write frees memory, a ZREM or DEL, run under OOM),
    else fails."""
    before = take()
    try:
        await call()
    except refused as exc:
        error: BaseException = exc
    else:
        if may_apply:
            return None
        raise AssertionError(f"{what}: the call was not refused")
    changed = diff(before, take())
    if changed:
        raise AssertionError(f"{what}: refused ({error!r}) but Redis changed:\n{changed}")
    return error


def _queue_on(client: Any, prefix: str, name: str) -> Queue:
    return Queue(Store(client, prefix=prefix), name)


async def assert_atomic_under_refusals(
    server: RedisServer, prefix: str, name: str, setup: Setup, call: Call
) -> dict[str, str]:
    """``call`` under OOM, then under NOREPLICAS, each on a queue of its own brought to its
    state by ``setup`` first: refused and unchanged, or, under OOM only, applied (Redis
    refuses a script over maxmemory at its first write only if that write may grow memory;
    one that starts with a ZREM or DEL runs whole). Returns each refusal's outcome: the
    error text, or ``"applied"``."""
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    refusals: list[Callable[[RedisServer], AbstractContextManager[None]]]
    refusals = [out_of_memory, no_replicas]
    outcomes = {}
    try:
        for i, refusal in enumerate(refusals):
            own = f"{prefix}{i}"
            queue = _queue_on(client, own, name)
            await setup(queue)
            with refusal(server):
                error = await assert_refused_unchanged(
                    partial(call, queue),
                    partial(snapshot, [server], f"{own}:"),
                    what=refusal.__name__,
                    may_apply=refusal is out_of_memory,
                )
            outcomes[refusal.__name__] = "applied" if error is None else str(error)
    finally:
        await client.aclose()
    return outcomes


async def _reset(client: Any, cluster: RedisCluster, base: str, slot: int) -> None:
    for key in snapshot(cluster.nodes, base, slot=slot):
        await client.delete(key)


def migration_points(keys: Sequence[str]) -> Iterator[list[str]]:
    """The sets of keys moved, one per point: each key alone, then prefixes doubling in
    size (2, 4, 8, ...) and all of them. A script meets a moved key at each of its reads
    and writes through the single keys; the prefixes add the mixes of moved and not."""
    ordered = sorted(keys)
    for key in ordered:
        yield [key]
    n = 2
    while n < len(ordered):
        yield ordered[:n]
        n *= 2
    if len(ordered) > 1:
        yield ordered


async def assert_atomic_mid_migration(
    cluster: RedisCluster, prefix: str, name: str, setup: Setup, call: Call
) -> int:
    """``call`` sent to the source of the queue's slot while the slot is half migrated,
    at every point of :func:`migration_points`: refused (TRYAGAIN, ASK, or an error inside
    the script) and unchanged, or, if it touched no moved key, applied. Returns the number
    of points where it was refused."""
    base = f"{prefix}:{{{name}}}:"
    slot = crc16_slot(base)
    source = slot_owner(cluster, slot)
    client = aioredis.Redis(port=source.port, decode_responses=True)
    points = 0
    try:
        queue = _queue_on(client, prefix, name)
        await setup(queue)
        keys = sorted(snapshot([source], base, slot=slot))
        assert keys, "setup made no key"
        for moved in migration_points(keys):
            with half_migrated_slot(cluster, slot, moved):
                error = await assert_refused_unchanged(
                    lambda: call(queue),
                    lambda: snapshot(cluster.nodes, base, slot=slot),
                    what=f"{len(moved)} key(s) moved: {moved}",
                    may_apply=True,
                )
            if error is None:  # applied: bring the queue back to the state under test
                await _reset(client, cluster, base, slot)
                await setup(queue)
            else:
                points += 1
    finally:
        await client.aclose()
    return points


__all__ = [
    "Snapshot",
    "assert_atomic_mid_migration",
    "assert_atomic_under_refusals",
    "assert_refused_unchanged",
    "diff",
    "migration_points",
    "snapshot",
]

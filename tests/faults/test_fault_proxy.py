"""The fault proxy does to one command what its rule says, and nothing to the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from engine import QueueManager
from engine.connection import RedisSettings
from tests.faults.errors import REDIS_ERRORS
from tests.faults.proxy import Fault, FaultProxy, Match, ThreadedFaultProxy
from tests.helpers import wait_for


@pytest.fixture
async def proxy(redis_server) -> AsyncIterator[FaultProxy]:
    p = await FaultProxy("127.0.0.1", redis_server.port).start()
    yield p
    await p.close()


def _client(proxy: FaultProxy, *, timeout_s: float = 2.0, retries: int = 0) -> aioredis.Redis:
    return aioredis.Redis(
        port=proxy.port,
        decode_responses=True,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), retries),
        retry_on_error=[ConnectionError, TimeoutError],
    )


@pytest.fixture
async def direct(client) -> aioredis.Redis:
    return client


async def test_an_error_reply_refuses_one_command_of_a_pipeline_and_keeps_the_order(
    proxy, direct, prefix
):
    proxy.add_rule(Fault.refuse("OOM"), Match(command="INCRBY"))
    c = _client(proxy)
    try:
        async with c.pipeline(transaction=False) as pipe:
            pipe.set(f"{prefix}:a", "1").incr(f"{prefix}:b").set(f"{prefix}:c", "3")
            pipe.get(f"{prefix}:a")
            replies = await pipe.execute(raise_on_error=False)
    finally:
        await c.aclose()
    assert replies[0] is True and replies[2] is True and replies[3] == "1"
    assert isinstance(replies[1], OutOfMemoryError)
    assert str(replies[1]) == REDIS_ERRORS["OOM"].split(" ", 1)[1]
    assert await direct.get(f"{prefix}:b") is None  # refused: never reached Redis
    assert await direct.get(f"{prefix}:c") == "3"
    assert [r.command for r in proxy.log] == ["INCRBY"]


async def test_a_delayed_reply_is_applied_and_the_client_resends_it(proxy, direct, prefix):
    rule = proxy.add_rule(Fault.delay(2.0), Match(command="INCRBY"))
    c = _client(proxy, timeout_s=0.3, retries=1)
    try:
        # redis-py times out, reconnects and resends: the first copy already ran.
        assert await c.incr(f"{prefix}:n") == 2
    finally:
        await c.aclose()
    assert rule.fired == 1 and rule.spent
    assert await direct.get(f"{prefix}:n") == "2"


async def test_cut_applies_the_command_and_loses_its_reply(proxy, direct, prefix):
    proxy.add_rule(Fault.cut(), Match(command="INCRBY"))
    c = _client(proxy)
    try:
        with pytest.raises(ConnectionError):
            await c.incr(f"{prefix}:n")
        assert await c.get(f"{prefix}:n") == "1"  # a new connection, no fault left
    finally:
        await c.aclose()


async def test_reset_drops_the_command_but_not_the_ones_before_it(proxy, direct, prefix):
    proxy.add_rule(Fault.reset(), Match(command="INCRBY"))
    c = _client(proxy)
    try:
        async with c.pipeline(transaction=False) as pipe:
            pipe.set(f"{prefix}:before", "x").incr(f"{prefix}:n").set(f"{prefix}:after", "y")
            with pytest.raises(ConnectionError):
                await pipe.execute()
    finally:
        await c.aclose()
    await wait_for(lambda: direct.exists(f"{prefix}:before"))
    assert await direct.get(f"{prefix}:n") is None
    assert await direct.get(f"{prefix}:after") is None


async def test_a_stall_holds_every_connection_until_it_ends(proxy, prefix):
    c1, c2 = _client(proxy), _client(proxy)
    try:
        await c1.ping()
        await c2.ping()
        proxy.stall(None)
        first = asyncio.ensure_future(c1.set(f"{prefix}:a", "1"))
        second = asyncio.ensure_future(c2.get(f"{prefix}:a"))
        await asyncio.sleep(0.2)  # a window in which nothing may complete
        assert not first.done() and not second.done() and proxy.stalled
        proxy.resume()
        assert await first is True
        assert await second in (None, "1")
        # A rule's stall starts at its command and ends by itself.
        proxy.add_rule(Fault.stall(0.3), Match(command="GET"))
        assert await c1.get(f"{prefix}:a") == "1"
        assert not proxy.stalled
    finally:
        await c1.aclose()
        await c2.aclose()


@pytest.mark.parametrize(
    ("code", "exc"),
    [
        ("OOM", OutOfMemoryError),
        ("NOREPLICAS", ResponseError),
        ("BUSY", ResponseError),
        ("TRYAGAIN", TryAgainError),
        ("LOADING", BusyLoadingError),
        ("MASTERDOWN", MasterDownError),
        ("READONLY", ReadOnlyError),
        ("CLUSTERDOWN", ClusterDownError),
    ],
)
async def test_each_refusal_reads_as_redis_own_error(proxy, code, exc):
    proxy.add_rule(Fault.refuse(code), Match(command="SET"))
    c = _client(proxy)
    try:
        with pytest.raises(exc) as raised:
            await c.set("k", "v")
    finally:
        await c.aclose()
    assert REDIS_ERRORS[code].endswith(str(raised.value)) or code in str(raised.value)


async def test_rules_match_engine_scripts_by_name_key_and_occurrence(proxy, redis_server, prefix):
    settings = RedisSettings(url=proxy.url, socket_timeout_s=2, retries=0)
    manager = QueueManager(prefix=prefix, settings=settings)
    try:
        queue = manager.create_queue("q")
        await queue.add(0)  # loads nothing: EVALSHA, then EVAL on NOSCRIPT
        proxy.add_rule(Fault.refuse("NOREPLICAS"), Match(script="add_job"), nth=2)
        proxy.add_rule(Fault.refuse("OOM"), Match(key=f"{prefix}:*:failed"), times=None)
        await queue.add(1)  # 1st match of the rule: passes
        with pytest.raises(ResponseError, match="NOREPLICAS"):
            await queue.add(2)
        await queue.add(3)  # times=1: spent
        with pytest.raises(OutOfMemoryError):
            await queue.retry_job("nope")  # retry_job's keys include `failed`
        with pytest.raises(OutOfMemoryError):
            await queue.promote_job("nope")  # so do promote_job's (it names the state)
        assert [j.data for j in await queue.get_jobs("waiting", 0, 9)] == [0, 1, 3]
    finally:
        await manager.close_all()
    assert [r.command.split()[-1] for r in proxy.log] == ["add_job", "retry_job", "promote_job"]


async def test_random_faults_replay_from_their_seed(redis_server):
    mix = {"error:OOM": 1.0, "error:BUSY": 1.0, "error:LOADING": 0.5}
    logs = []
    for _ in range(2):
        proxy = await FaultProxy("127.0.0.1", redis_server.port).start()
        c = _client(proxy)
        try:
            proxy.randomize(1234, 0.3, mix, match=Match(command="ECHO"))
            for i in range(60):
                try:
                    await c.echo(str(i))
                    await c.ping()  # not matched: draws nothing
                except (ResponseError, BusyLoadingError):
                    pass
        finally:
            await c.aclose()
            await proxy.close()
        logs.append([(r.index, str(r.fault)) for r in proxy.log])
    assert logs[0] == logs[1]
    assert 5 < len(logs[0]) < 40
    assert {f for _, f in logs[0]} == {"error:OOM", "error:BUSY", "error:LOADING"}


async def test_random_cooldown_lets_the_resend_through(proxy, direct, prefix):
    proxy.randomize(7, 1.0, {"delay": 1}, match=Match(command="INCRBY"), delay_s=1.5, cooldown_s=5)
    c = _client(proxy, timeout_s=0.3, retries=1)
    try:
        assert await c.incr(f"{prefix}:n") == 2  # delayed first copy, resend passes
    finally:
        await c.aclose()
    assert len(proxy.log) == 1


async def test_subscribers_pass_through_unparsed(proxy, direct, prefix):
    c = _client(proxy)
    pubsub = c.pubsub()
    try:
        await pubsub.subscribe(f"{prefix}:ch")
        await wait_for(lambda: direct.publish(f"{prefix}:ch", "hello"))

        async def message() -> object:
            return await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)

        got = await wait_for(message)
        assert got["data"] == "hello"  # type: ignore[index]
    finally:
        await pubsub.aclose()
        await c.aclose()


def test_threaded_proxy_takes_rules_from_another_thread(redis_server):
    import redis

    proxy = ThreadedFaultProxy("127.0.0.1", redis_server.port)
    try:
        proxy.add_rule(Fault.refuse("READONLY"), Match(command="SET"))
        c = redis.Redis(port=proxy.port, socket_timeout=2)
        try:
            with pytest.raises(redis.exceptions.ReadOnlyError):
                c.set("k", "v")
            assert c.set("k", "v") is True
        finally:
            c.close()
        assert [str(r.fault) for r in proxy.log] == ["error:READONLY"]
    finally:
        proxy.close()

"""The Lua loader: naming, headers, key counts, NOSCRIPT recovery, pipelines, one slot."""

import re
from importlib import resources

import pytest

from engine.keys import QueueKeys, new_request_id
from engine.scripts import SOURCES, LuaScript, Scripts, execute
from tests.helpers import crc16_slot


def test_every_lua_file_is_loaded_as_an_attribute_of_scripts(client):
    scripts = Scripts(client)
    loaded = {v.name for v in vars(scripts).values() if isinstance(v, LuaScript)}
    files = {
        p.name.split("-")[0]
        for p in resources.files("engine").joinpath("lua").iterdir()
        if p.name.endswith(".lua")
    }
    assert loaded == files == set(SOURCES)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_script_has_a_header_naming_each_key_and_returns(name):
    num_keys, variadic, source = SOURCES[name]
    header = source.split("]]", 1)[0]
    assert header.startswith("--[[")
    declared = sorted(int(n) for n in re.findall(r"KEYS\[(\d+)\]", header))
    assert declared == list(range(1, num_keys + 1)), f"{name}: header KEYS vs file suffix"
    if variadic:
        assert re.search(rf"KEYS\[{num_keys + 1}\.\.\]", header), f"{name}: header names no tail"
    assert "ARGV[1]" in header or "ARGV" not in source
    assert "Returns" in header
    body = source.split("]]", 1)[1]
    used = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", body)}
    assert max(used, default=0) <= num_keys


async def test_wrong_key_count_is_refused_before_reaching_redis(client):
    scripts = Scripts(client)
    with pytest.raises(ValueError, match="retry_job takes 11 keys, 2 were given"):
        await scripts.retry_job(["a", "b"], [])
    with pytest.raises(ValueError, match="add_job takes more than 7 keys, 2 were given"):
        await scripts.add_job(["a", "b"], [])


async def test_scripts_recover_after_script_flush_and_run_in_pipelines(client, prefix):
    scripts = Scripts(client)
    k = QueueKeys(prefix, "q")

    def keys() -> list[str]:  # a fresh request key per call
        return [k.meta, k.events, k.marker, k.request(new_request_id())]

    assert await scripts.pause_queue(keys(), ["1", "", 100, 10_000]) == 1
    await client.script_flush()
    assert await scripts.pause_queue(keys(), ["0", "", 100, 10_000]) == 1
    await client.script_flush()
    async with client.pipeline(transaction=False) as pipe:
        await scripts.pause_queue(keys(), ["1", "", 100, 10_000], client=pipe)
        pipe.ping()
        await scripts.pause_queue(keys(), ["1", "", 100, 10_000], client=pipe)
        # Each call's result stays at its own index (the re-sent calls run last).
        assert await execute(pipe) == [1, True, 0]
    # Once cached again, a pipeline costs one round trip: no SCRIPT EXISTS before it.
    before = (await client.info("commandstats")).get("cmdstat_script", {}).get("calls", 0)
    async with client.pipeline(transaction=False) as pipe:
        await scripts.pause_queue(keys(), ["0", "", 100, 10_000], client=pipe)
        assert await execute(pipe) == [1]
    after = (await client.info("commandstats")).get("cmdstat_script", {}).get("calls", 0)
    assert before == after


async def test_every_key_a_queue_operation_touches_hashes_to_the_queue_slot(
    manager, client, prefix, monkeypatch
):
    """Record the KEYS of every script call (and the job key prefix in ARGV, and the
    `prioritized` key scripts derive from `wait`) during a full tour of the admin API, then
    check that each call stays in one Cluster slot."""
    calls: list[tuple[str, list[str]]] = []
    original = LuaScript.__call__

    def spy(self, keys, args=(), client=None):
        touched = list(keys) + [a for a in args if isinstance(a, str) and a.startswith(prefix)]
        # As the scripts do: `string.sub(waitKey, 1, -5) .. "prioritized"`.
        touched += [k[:-4] + "prioritized" for k in keys if k.endswith(":wait")]
        calls.append((self.name, touched))
        return original(self, keys, args, client)

    monkeypatch.setattr(LuaScript, "__call__", spy)
    q = manager.create_queue("slot-check")
    job = await q.add({}, {"jobId": "fixed-a"})
    delayed = await q.add({}, {"delay": 100000, "priority": 3})
    await q.add({}, {"priority": 1})
    await q.add_bulk([{"data": 1}, {"data": 2}])
    await q.pause()
    await q.resume()
    await q.promote_job(delayed.id)
    await q.remove_job(job.id)
    await client.zadd(q.keys.failed, {delayed.id: 1})
    await client.zrem(q.keys.prioritized, delayed.id)
    await q.retry_job(delayed.id)
    await client.hset(q.keys.job("done"), "data", "1")
    await client.zadd(q.keys.completed, {"done": 1})
    assert await q.clean("completed", 0) == 1
    assert {name for name, _ in calls} >= {
        "add_job",
        "pause_queue",
        "promote_job",
        "remove_job",
        "retry_job",
        "clean_jobs",
    }
    slot = crc16_slot(q.keys.base)
    # The derived name is the one QueueKeys gives (the zset exists: jobs with a priority).
    assert any(q.keys.prioritized in touched for _, touched in calls)
    assert await client.type(q.keys.prioritized) == "zset"
    assert await client.type(q.keys.wait) == "list"
    for name, touched in calls:
        assert {crc16_slot(k) for k in touched} == {slot}, name
    # And every key that now exists under the prefix (built in Lua or Python) too.
    for key in await client.keys(f"{prefix}:{{slot-check}}*"):
        assert crc16_slot(key) == slot, key


def test_crc16_slot_matches_redis_cluster_reference_values():
    # Reference values from the Redis Cluster specification / CLUSTER KEYSLOT.
    assert crc16_slot("123456789") == 12739
    assert crc16_slot("foo") == 12182
    assert crc16_slot("{user1000}.following") == crc16_slot("{user1000}.followers")
    # An empty first tag means the whole key is hashed; the first non-empty tag wins.
    assert crc16_slot("foo{}{bar}") != crc16_slot("bar")
    assert crc16_slot("foo{{bar}}zap") == crc16_slot("{bar")


def test_includes_are_spliced_in_so_redis_gets_whole_scripts():
    assert not any(re.search(r"^-- @include", src, re.M) for _, _, src in SOURCES.values())
    users = [
        name for name, (_, _, source) in SOURCES.items() if "local function pushWaiting" in source
    ]
    assert sorted(users) == [
        "fail_job",
        "fire_schedule",
        "move_to_active",
        "promote_job",
        "recover_stalled",
        "release_jobs",
        "retry_job",
        "run_schedule",
    ]

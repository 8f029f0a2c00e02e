"""Each helper of tests/faults/real.py makes a real redis-server answer the error it names,
and that server's text is the one the proxy answers in its place (errors.py)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import BusyLoadingError, ResponseError

from tests.faults.errors import REDIS_ERRORS
from tests.faults.real import (
    admin_client,
    busy_script,
    cluster_down,
    full_error,
    half_migrated_slot,
    loading_server,
    no_replicas,
    out_of_memory,
    replica_of,
    stale_replica,
    wait_loaded,
)
from tests.helpers import crc16_slot

pytestmark = pytest.mark.slow


def _error(client: Any, *command: object) -> str:
    """The error reply to ``command``, code included, as Redis sent it."""
    with pytest.raises((ResponseError, BusyLoadingError)) as raised:
        client.execute_command(*command)
    return full_error(raised.value)


def _is(code: str, seen: str) -> bool:
    """The real server's reply is word for word the one the proxy injects."""
    return seen == REDIS_ERRORS[code]


def test_out_of_memory_refuses_writes_and_scripts_then_heals(redis_factory):
    server = redis_factory()
    c = admin_client(server)
    try:
        with out_of_memory(server):
            assert _is("OOM", _error(c, "SET", "k", "v"))
            in_script = _error(c, "EVAL", "return redis.call('SET', KEYS[1], 'v')", 1, "k")
            assert in_script.startswith(f"{REDIS_ERRORS['OOM']} script: ")
            assert c.get("k") is None  # reads still work
        assert c.set("k", "v") is True
    finally:
        c.close()


def test_no_replicas_refuses_writes_then_heals(redis_factory):
    server = redis_factory()
    c = admin_client(server)
    try:
        with no_replicas(server):
            assert _is("NOREPLICAS", _error(c, "SET", "k", "v"))
        assert c.set("k", "v") is True
    finally:
        c.close()


def test_a_long_script_makes_every_other_client_busy(redis_factory):
    server = redis_factory()
    c = admin_client(server)
    try:
        with busy_script(server):
            assert _is("BUSY", _error(c, "GET", "k"))
        assert c.ping() is True
    finally:
        c.close()


def test_a_replica_refuses_writes_readonly(redis_server):
    with replica_of(redis_server) as replica:
        c = admin_client(replica)
        try:
            assert _is("READONLY", _error(c, "SET", "k", "v"))
        finally:
            c.close()


def test_a_replica_of_a_dead_master_answers_masterdown():
    with stale_replica() as replica:
        c = admin_client(replica)
        try:
            assert _is("MASTERDOWN", _error(c, "GET", "k"))
        finally:
            c.close()


def test_a_server_loading_its_dataset_answers_loading():
    with loading_server(seconds=3) as server:
        c = admin_client(server)
        try:
            assert _is("LOADING", _error(c, "GET", "k"))
            wait_loaded(server)
            assert c.dbsize() > 0
        finally:
            c.close()


def test_a_half_migrated_slot_answers_tryagain_and_ask(redis_cluster):
    a, b = "{faults-mig}a", "{faults-mig}b"
    slot = crc16_slot(a)
    from tests.redis_servers import slot_owner

    owner = slot_owner(redis_cluster, slot).client()
    try:
        owner.set(a, "1")
        owner.set(b, "2")
    finally:
        owner.close()
    with half_migrated_slot(redis_cluster, slot, [a]) as (source, target):
        c = admin_client(source)
        try:
            assert _is("TRYAGAIN", _error(c, "MGET", a, b))
            script = "return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}"
            assert _is("TRYAGAIN", _error(c, "EVAL", script, 2, a, b))
            assert _error(c, "GET", a) == f"ASK {slot} 127.0.0.1:{target.port}"
            assert c.get(b) == "2"
        finally:
            c.close()
    owner = slot_owner(redis_cluster, slot).client()
    try:
        assert owner.mget(a, b) == ["1", "2"]  # back, stable
        owner.delete(a, b)
    finally:
        owner.close()


def test_a_cluster_missing_a_slot_answers_clusterdown():
    with cluster_down(slot=0) as node:
        c = admin_client(node)
        try:
            seen = _error(c, "GET", "k")
            assert seen in (REDIS_ERRORS["CLUSTERDOWN"], "CLUSTERDOWN Hash slot not served")
        finally:
            c.close()

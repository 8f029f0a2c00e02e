"""Make a REAL redis-server answer the errors the proxy can only imitate.

Each helper is a context manager that puts a server (or Cluster) in the state, waits until
the server really answers the error, and undoes it on exit:

- :func:`out_of_memory` (``OOM``): ``maxmemory`` 1 byte under ``noeviction``;
- :func:`no_replicas` (``NOREPLICAS``): ``min-replicas-to-write 1`` with no replica;
- :func:`busy_script` (``BUSY``): another client runs a long (read-only, killable)
  script past ``busy-reply-threshold``;
- :func:`replica_of` (``READONLY``): a replica of the server;
- :func:`stale_replica` (``MASTERDOWN``): a replica whose master is down, with
  ``replica-serve-stale-data no``;
- :func:`loading_server` (``LOADING``): a server restarted on a dataset it loads slowly
  (``key-load-delay``), answering while it loads;
- :func:`half_migrated_slot` (``TRYAGAIN`` / ``ASK``): a slot of a real Cluster half moved
  (IMPORTING/MIGRATING, some keys migrated);
- :func:`cluster_down` (``CLUSTERDOWN``): a one-node Cluster with a slot taken away.

All of them are synchronous (admin clients, threads); async tests may use them directly.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from redis import exceptions
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.retry import Retry

from tests.redis_servers import RedisCluster, RedisServer, free_port, slot_owner

_BUSY_LOOP = """
local t0 = redis.call('TIME')
local start = tonumber(t0[1]) * 1000 + tonumber(t0[2]) / 1000
while true do
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 - start >= tonumber(ARGV[1]) then
    return 1
  end
end
"""
_POPULATE = """
local value = string.rep('x', tonumber(ARGV[2]))
for i = 1, tonumber(ARGV[1]) do redis.call('SET', KEYS[1] .. i, value) end
return 1
"""


def _until(what: str, probe: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.01)
    raise RuntimeError(f"the server never answered {what} within {timeout_s}s")


# redis-py maps these codes to exception classes and strips the code from the message.
_CODE_OF_CLASS: tuple[tuple[type[BaseException], str], ...] = (
    (exceptions.OutOfMemoryError, "OOM"),
    (exceptions.BusyLoadingError, "LOADING"),
    (exceptions.ReadOnlyError, "READONLY"),
    (exceptions.MasterDownError, "MASTERDOWN"),  # before its base class ClusterDownError
    (exceptions.ClusterDownError, "CLUSTERDOWN"),
    (exceptions.TryAgainError, "TRYAGAIN"),
    (exceptions.AskError, "ASK"),
    (exceptions.MovedError, "MOVED"),
    (exceptions.NoScriptError, "NOSCRIPT"),
)


def error_code(exc: BaseException) -> str:
    """The Redis error code of an error reply as redis-py raised it (``OOM``, ``BUSY``)."""
    for cls, code in _CODE_OF_CLASS:
        if isinstance(exc, cls):
            return code
    return str(exc).split(" ", 1)[0]


def full_error(exc: BaseException) -> str:
    """The error reply's text as Redis sent it (code included)."""
    code, text = error_code(exc), str(exc)
    return text if text.split(" ", 1)[0] == code else f"{code} {text}"


def admin_client(server: RedisServer, **kwargs: Any) -> Any:
    """A synchronous client that never retries (so an error reply reaches the caller)."""
    return server.client(retry=Retry(NoBackoff(), 0), **kwargs)


def answers_error(client: Any, code: str, *command: Any) -> bool:
    """Whether ``command`` gets an error reply with ``code`` right now."""
    try:
        client.execute_command(*command)
    except (ResponseError, exceptions.ConnectionError) as exc:
        return error_code(exc) == code
    return False


class AnyReplyServer(RedisServer):
    """A server that counts as started once it answers anything at all: a replica whose
    master is down answers PING with MASTERDOWN, a loading one with LOADING."""

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64)[:1] in (b"+", b"-")
        except OSError:
            return False


@contextmanager
def _config(server: RedisServer, **settings: Any) -> Iterator[Any]:
    admin = admin_client(server, socket_timeout=5)
    names = [name.replace("_", "-") for name in settings]
    old = {n: admin.config_get(n)[n] for n in names}
    try:
        for name, value in zip(names, settings.values(), strict=True):
            admin.config_set(name, value)
        yield admin
    finally:
        for name, value in old.items():
            admin.config_set(name, value)
        admin.close()


@contextmanager
def out_of_memory(server: RedisServer) -> Iterator[None]:
    """Every write (and every script's first write) answers OOM."""
    with _config(server, maxmemory=1, maxmemory_policy="noeviction") as admin:
        _until("OOM", lambda: answers_error(admin, "OOM", "SET", "faults:oom-probe", "1"))
        yield


@contextmanager
def no_replicas(server: RedisServer) -> Iterator[None]:
    """Every write answers NOREPLICAS (min-replicas-to-write 1, no replica attached)."""
    with _config(server, min_replicas_to_write=1) as admin:
        _until("NOREPLICAS", lambda: answers_error(admin, "NOREPLICAS", "SET", "faults:p", "1"))
        yield


@contextmanager
def busy_script(server: RedisServer, seconds: float = 30.0) -> Iterator[None]:
    """Another client runs a script; every other client gets BUSY until the block exits
    (the script is killed then; it is read-only, so SCRIPT KILL works) or ``seconds``."""
    with _config(server, busy_reply_threshold=20) as admin:
        runner = server.client(socket_timeout=seconds + 30)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                runner.eval(_BUSY_LOOP, 0, int(seconds * 1000))
            except ResponseError as exc:  # killed by the exit below
                if "killed" not in str(exc).lower():
                    failure.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            _until("BUSY", lambda: answers_error(admin, "BUSY", "GET", "faults:p"))
            yield
        finally:
            deadline = time.monotonic() + 10
            while thread.is_alive() and time.monotonic() < deadline:
                with suppress(ResponseError):  # NOTBUSY: it ended by itself
                    admin.script_kill()
                thread.join(0.1)
            runner.close()
        if failure:
            raise failure[0]


@contextmanager
def replica_of(master: RedisServer) -> Iterator[RedisServer]:
    """A replica of ``master`` in sync: every write sent to it answers READONLY."""
    replica = RedisServer(extra_args=("--replicaof", "127.0.0.1", str(master.port))).start()
    try:
        admin = admin_client(replica, socket_timeout=5)
        try:
            _until(
                "a synced replica",
                lambda: admin.info("replication").get("master_link_status") == "up",
            )
        finally:
            admin.close()
        yield replica
    finally:
        replica.cleanup()


@contextmanager
def stale_replica() -> Iterator[RedisServer]:
    """A replica whose master is unreachable, with ``replica-serve-stale-data no``: reads
    and PING answer MASTERDOWN (writes still answer READONLY)."""
    server = AnyReplyServer(
        extra_args=(
            "--replicaof", "127.0.0.1", str(free_port()),
            "--replica-serve-stale-data", "no",
        )
    ).start()  # fmt: skip
    try:
        admin = admin_client(server, socket_timeout=5)
        try:
            _until("MASTERDOWN", lambda: answers_error(admin, "MASTERDOWN", "GET", "k"))
        finally:
            admin.close()
        yield server
    finally:
        server.cleanup()


@contextmanager
def loading_server(seconds: float = 4.0, key_load_delay_us: int = 200) -> Iterator[RedisServer]:
    """A server restarted on an RDB file that takes about ``seconds`` to load (longer on a
    busy machine), yielded as soon as it answers LOADING; it then finishes loading by
    itself. ``wait_loaded`` on the result waits for the end."""
    keys = max(1, int(seconds * 1_000_000 / key_load_delay_us))
    server = AnyReplyServer().start()
    try:
        admin = server.client(socket_timeout=60)
        try:
            admin.eval(_POPULATE, 1, "faults:load:", keys, 16)
            admin.save()
        finally:
            admin.close()
        server.kill()
        server.extra_args = (
            "--key-load-delay", str(key_load_delay_us),
            # Serve clients (with LOADING) between small slices of the file.
            "--loading-process-events-interval-bytes", "1024",
        )  # fmt: skip
        server.start()
        admin = admin_client(server, socket_timeout=5)
        try:
            _until("LOADING", lambda: answers_error(admin, "LOADING", "GET", "faults:load:1"))
        finally:
            admin.close()
        yield server
    finally:
        server.cleanup()


def wait_loaded(server: RedisServer, timeout_s: float = 60.0) -> None:
    """Until ``server`` has finished loading its dataset."""
    admin = admin_client(server, socket_timeout=5)
    try:
        _until("the end of loading", lambda: not answers_error(admin, "LOADING", "PING"), timeout_s)
    finally:
        admin.close()


def _node_ids(cluster: RedisCluster) -> dict[int, str]:
    out = {}
    for node in cluster.nodes:
        c = node.client()
        try:
            out[node.port] = str(c.execute_command("CLUSTER", "MYID"))
        finally:
            c.close()
    return out


@contextmanager
def half_migrated_slot(
    cluster: RedisCluster, slot: int, move: Sequence[str], target: RedisServer | None = None
) -> Iterator[tuple[RedisServer, RedisServer]]:
    """Start moving ``slot`` to ``target`` (default: the next node) and MIGRATE only the
    keys in ``move``; yields (source, target). Meanwhile the source answers a command on
    keys of which some moved and some not TRYAGAIN, and one on moved keys only ASK. On
    exit the slot is back on the source, stable, with every key."""
    source = slot_owner(cluster, slot)
    if target is None:
        target = next(n for n in cluster.nodes if n.port != source.port)
    ids = _node_ids(cluster)
    src, dst = source.client(), target.client()
    try:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
        if move:
            src.execute_command(
                "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "REPLACE", "KEYS", *move
            )
        yield source, target
    finally:
        # Back: the source forgets the migration first (a MIGRATING source would answer the
        # returning keys with ASK), then every key of the slot on the target returns
        # (moved ones and any written there through ASK): the target serves an importing
        # slot to ASKING clients only, one key at a time (several keys with one missing
        # would answer TRYAGAIN).
        src.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        while keys := dst.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            for key in keys:
                with dst.pipeline(transaction=False) as pipe:
                    pipe.execute_command("ASKING")
                    pipe.execute_command(
                        "MIGRATE", "127.0.0.1", source.port, key, 0, 5000, "REPLACE"
                    )
                    pipe.execute()
        dst.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        src.close()
        dst.close()


@contextmanager
def cluster_down(slot: int = 0) -> Iterator[RedisServer]:
    """A one-node Cluster serving every slot but ``slot``: a key of that slot answers
    ``CLUSTERDOWN Hash slot not served``, and once the node notices the missing slot
    (full coverage required), every key ``CLUSTERDOWN The cluster is down``."""
    node = RedisServer(
        port=free_port(cluster_bus=True),
        extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
    ).start()
    try:
        admin = admin_client(node, socket_timeout=5)
        try:
            admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            _until("cluster_state:ok", lambda: admin.cluster("INFO")["cluster_state"] == "ok")
            admin.execute_command("CLUSTER", "DELSLOTS", slot)
            _until("CLUSTERDOWN", lambda: answers_error(admin, "CLUSTERDOWN", "GET", "k"))
        finally:
            admin.close()
        yield node
    finally:
        node.cleanup()


__all__ = [
    "AnyReplyServer",
    "admin_client",
    "answers_error",
    "busy_script",
    "cluster_down",
    "error_code",
    "full_error",
    "half_migrated_slot",
    "loading_server",
    "no_replicas",
    "out_of_memory",
    "replica_of",
    "stale_replica",
    "wait_loaded",
]

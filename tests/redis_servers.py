"""Redis topologies for tests, the chaos suite and the benchmarks: a server that can be
frozen, killed and restarted (optionally TLS-only), a Redis Cluster of N masters with slot
migration by hand, a Sentinel set (master, replica, three sentinels), throw-away TLS files
and least-privilege ACL users. Built on the product's private server,
``engine.redis_server.RedisServer``.
"""

from __future__ import annotations

import datetime
import ipaddress
import random
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import redis_server as product
from engine.redis_server import INSTALL_HINT, redis_server_binary

__all__ = [
    "INSTALL_HINT",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "TlsFiles",
    "create_acl_user",
    "free_port",
    "make_tls_files",
    "migrate_slot",
    "ping",
    "redis_server_binary",
    "slot_owner",
]


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(cluster_bus: bool = False) -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    With ``cluster_bus`` the port + 10000 (Redis Cluster's bus) is free too, so the port
    is at most 55535.
    """
    if not cluster_bus:
        return product.free_port()
    for _ in range(200):
        port = random.randint(20000, 45000)
        if _is_free(port) and _is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def ping(host: str, port: int, timeout_s: float = 0.5, tls: TlsFiles | None = None) -> bool:
    """True when a Redis server answers PING on host:port (no auth; TLS with ``tls``)."""
    if tls is None:
        return product.ping(host, port, timeout_s)
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            tls.client_context().wrap_socket(raw, server_hostname=host) as sock,
        ):
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files of a private CA, a server certificate for 127.0.0.1/localhost and a
    client certificate, all signed by that CA (see :func:`make_tls_files`)."""

    ca_file: str
    cert_file: str
    key_file: str
    client_cert_file: str
    client_key_file: str

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.load_cert_chain(self.client_cert_file, self.client_key_file)
        return ctx


def make_tls_files(directory: str | Path, days: int = 2) -> TlsFiles:
    """Generate a throw-away CA plus server and client certificates (EC P-256) with the
    ``cryptography`` package. For tests and local setups only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("engine test CA"))
        .issuer_name(name("engine test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (out / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def leaf(cn: str, usage: x509.ObjectIdentifier, stem: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        (out / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(key, out / f"{stem}.key")

    leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, "server")
    leaf("engine client", ExtendedKeyUsageOID.CLIENT_AUTH, "client")
    return TlsFiles(
        ca_file=str(out / "ca.crt"),
        cert_file=str(out / "server.crt"),
        key_file=str(out / "server.key"),
        client_cert_file=str(out / "client.crt"),
        client_key_file=str(out / "client.key"),
    )


def _sync_client(host: str, port: int, *, tls: TlsFiles | None = None, **kwargs: Any) -> Any:
    import redis

    if tls is not None:
        kwargs.update(
            ssl=True,
            ssl_ca_certs=tls.ca_file,
            ssl_certfile=tls.client_cert_file,
            ssl_keyfile=tls.client_key_file,
        )
    return redis.Redis(host=host, port=port, decode_responses=True, **kwargs)


# What the engine needs, and no more: data commands, scripts, WAIT/HELLO (@connection),
# MULTI (@transaction), SUBSCRIBE/PUBLISH of the cancel channels (@pubsub), and TIME,
# which the scripts call and which is in none of the data categories. Everything
# @dangerous (CONFIG, KEYS, FLUSHALL, INFO, DEBUG) stays off.
ENGINE_ACL_CATEGORIES = (
    "+@read +@write +@scripting +@connection +@transaction +@pubsub -@dangerous +time"
)


def create_acl_user(
    server: RedisServer,
    username: str,
    password: str,
    key_patterns: tuple[str, ...],
    *,
    categories: str = ENGINE_ACL_CATEGORIES,
    extra_rules: tuple[str, ...] = (),
) -> None:
    """Create (or reset) a least-privilege ACL user on ``server`` (run as the default
    user): on, ``>password``, only ``key_patterns`` (e.g. ``engine:*``; keys and pub/sub
    channels), the command ``categories``, plus ``extra_rules`` such as ``+info``."""
    client = _sync_client("127.0.0.1", server.port, tls=server.tls)
    try:
        rules = ["reset", "on", f">{password}", *(f"~{p}" for p in key_patterns)]
        rules += [f"&{p}" for p in key_patterns]  # cancel channels share the key names
        rules += categories.split() + list(extra_rules)
        client.execute_command("ACL", "SETUSER", username, *rules)
    finally:
        client.close()


class RedisServer(product.RedisServer):
    """The product's private server, plus what tests do to it: TLS-only listening, a
    synchronous admin client, freeze / thaw / restart.

    With ``tls`` the server listens on ``port`` with TLS only (no plain-text port) and asks
    clients for a certificate signed by the CA (``tls_auth_clients``: ``yes``,
    ``optional`` or ``no``).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: str | Path | None = None,
        persistence: str | None = None,
        extra_args: tuple[str, ...] = (),
        tls: TlsFiles | None = None,
        tls_auth_clients: str = "optional",
    ) -> None:
        super().__init__(
            port=port, data_dir=data_dir, persistence=persistence, extra_args=extra_args
        )
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: Any) -> Any:
        """A synchronous redis-py client to this server (admin and assertions)."""
        return _sync_client("127.0.0.1", self.port, tls=self.tls, **kwargs)

    def _port_args(self) -> list[str]:
        if self.tls is None:
            return super()._port_args()
        t = self.tls
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", t.cert_file,
            "--tls-key-file", t.key_file,
            "--tls-ca-cert-file", t.ca_file,
            "--tls-auth-clients", self.tls_auth_clients,
            "--tls-replication", "yes",
        ]  # fmt: skip

    def _answers(self) -> bool:
        return ping("127.0.0.1", self.port, tls=self.tls)

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        super().start(timeout_s)
        return self

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its sockets open but answers nothing."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        self._signal(signal.SIGCONT)

    def restart(self) -> RedisServer:
        """Kill and start again on the same port and data dir (AOF is replayed if on)."""
        self.kill()
        return self.start()


class RedisCluster:
    """A local Redis Cluster of ``masters`` redis-server processes (no replicas).

    Started with ``redis-cli --cluster create``; for tests and the chaos suite.
    """

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(
                port=free_port(cluster_bus=True),
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ),
            )
            for _ in range(masters)
        ]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"redis-cluster://{hosts}"

    def start(self, timeout_s: float = 20.0) -> RedisCluster:
        try:
            return self._start(timeout_s)
        except BaseException:
            self.cleanup()
            raise

    def _start(self, timeout_s: float) -> RedisCluster:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError(INSTALL_HINT.replace("redis-server", "redis-cli"))
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout_s,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [cli, "-p", str(n.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=False,
                ).stdout
                for n in self.nodes
            ]
            if all("cluster_state:ok" in s for s in states):
                return self
            time.sleep(0.05)
        raise RuntimeError("Redis Cluster did not reach cluster_state:ok")

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


class SentinelProcess(RedisServer):
    """One ``redis-server --sentinel`` process with its own (rewritable) config file."""

    def __init__(
        self,
        service: str,
        master_port: int,
        *,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
    ) -> None:
        super().__init__()
        self.service = service
        self.master_port = master_port
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    def _args(self) -> list[str]:
        conf = self.data_dir / "sentinel.conf"
        if not conf.exists():  # Sentinel rewrites it; keep its state across restarts
            s = self.service
            conf.write_text(
                f"port {self.port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.data_dir}\n"
                f"logfile {self.data_dir / 'redis.log'}\n"
                f"sentinel monitor {s} 127.0.0.1 {self.master_port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {s} {self.down_after_ms}\n"
                f"sentinel failover-timeout {s} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {s} 1\n"
            )
        return [redis_server_binary(), str(conf), "--sentinel"]


class RedisSentinel:
    """A Sentinel-managed primary/replica set on free loopback ports: one master, one
    replica (``--replicaof``), and three sentinels (quorum 2, down-after 1000 ms).

    ``persistence`` applies to both data nodes; ``min_replicas_to_write`` and
    ``min_replicas_max_lag_s`` set the master's (and, after a failover, the promoted
    replica's) ``min-replicas-to-write`` / ``min-replicas-max-lag``.
    """

    def __init__(
        self,
        service: str = "engine",
        *,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        persistence: str | None = None,
        min_replicas_to_write: int = 0,
        min_replicas_max_lag_s: int = 10,
    ) -> None:
        self.service = service
        common = ("--min-replicas-to-write", str(min_replicas_to_write),
                  "--min-replicas-max-lag", str(min_replicas_max_lag_s),
                  "--repl-diskless-sync", "no")  # fmt: skip
        self.master = RedisServer(persistence=persistence, extra_args=common)
        self.replica = RedisServer(
            persistence=persistence,
            extra_args=(*common, "--replicaof", "127.0.0.1", str(self.master.port)),
        )
        self.sentinels = [
            SentinelProcess(service, self.master.port, quorum=quorum, down_after_ms=down_after_ms)
            for _ in range(sentinels)
        ]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis-sentinel://{hosts}/{self.service}"

    @property
    def data_nodes(self) -> list[RedisServer]:
        return [self.master, self.replica]

    def start(self, timeout_s: float = 20.0) -> RedisSentinel:
        try:
            for node in (self.master, self.replica, *self.sentinels):
                node.start()
            self._wait_ready(timeout_s)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _sentinel_call(self, *args: str) -> Any:
        last: Exception | None = None
        for sentinel in self.sentinels:
            if sentinel.process is None or sentinel.process.poll() is not None:
                continue
            client = sentinel.client(socket_timeout=1)
            try:
                return client.execute_command(*args)
            except Exception as exc:  # try the next sentinel
                last = exc
            finally:
                client.close()
        raise RuntimeError(f"no sentinel answered {args!r}: {last}")

    def master_port(self) -> int:
        """The master's port as the sentinels currently report it."""
        host_port = self._sentinel_call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(host_port[1])

    def replica_node(self) -> RedisServer:
        master = self.master_port()
        return next(n for n in self.data_nodes if n.port != master)

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.data_nodes if n.port == port)

    def _wait_ready(self, timeout_s: float) -> None:
        """Until the replica is in sync and every sentinel knows the replica and the
        other sentinels (so a failover can reach quorum)."""
        deadline = time.monotonic() + timeout_s
        others = len(self.sentinels) - 1
        while time.monotonic() < deadline:
            try:
                replica = self.replica.client(socket_timeout=1)
                try:
                    info = replica.info("replication")
                finally:
                    replica.close()
                ready = info.get("master_link_status") == "up"
                for sentinel in self.sentinels:
                    client = sentinel.client(socket_timeout=1)
                    try:
                        replicas = client.execute_command("SENTINEL", "REPLICAS", self.service)
                        peers = client.execute_command("SENTINEL", "SENTINELS", self.service)
                    finally:
                        client.close()
                    ready = ready and len(replicas) >= 1 and len(peers) >= others
                if ready:
                    return
            except Exception:  # not up yet
                pass
            time.sleep(0.1)
        raise RuntimeError("Sentinel set did not become ready (replica sync / discovery)")

    def kill_master(self, timeout_s: float = 20.0) -> tuple[RedisServer, float]:
        """SIGKILL the current master and wait until the sentinels promote the replica.
        Returns the killed node and the failover time in seconds (kill -> new address)."""
        old = self.node(self.master_port())
        started = time.monotonic()
        old.kill()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.master_port() != old.port:
                    return old, time.monotonic() - started
            except RuntimeError:
                pass
            time.sleep(0.05)
        raise RuntimeError("Sentinel failover did not happen in time")

    def rejoin(self, node: RedisServer, timeout_s: float = 20.0) -> None:
        """Restart a killed former master as a replica of the current master (what
        Sentinel itself does on its next check, up to ~10 s later) and wait until it is
        in sync."""
        node.start()
        client = node.client(socket_timeout=2)
        try:
            client.execute_command("REPLICAOF", "127.0.0.1", self.master_port())
        finally:
            client.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            client = node.client(socket_timeout=1)
            try:
                info = client.info("replication")
            finally:
                client.close()
            if info.get("role") == "slave" and info.get("master_link_status") == "up":
                return
            time.sleep(0.1)
        raise RuntimeError(f"node {node.port} did not rejoin as a replica")

    def cleanup(self) -> None:
        for node in (*self.sentinels, self.replica, self.master):
            node.cleanup()


def _cluster_ids(nodes: list[RedisServer]) -> dict[int, str]:
    ids = {}
    for node in nodes:
        client = node.client()
        try:
            ids[node.port] = str(client.execute_command("CLUSTER", "MYID"))
        finally:
            client.close()
    return ids


def slot_owner(cluster: RedisCluster, slot: int) -> RedisServer:
    """The node that serves ``slot`` now (per the first node's view)."""
    client = cluster.nodes[0].client()
    try:
        ranges = client.execute_command("CLUSTER", "SLOTS")
    finally:
        client.close()
    for entry in ranges:
        start, end, master = entry[0], entry[1], entry[2]
        if int(start) <= slot <= int(end):
            return next(n for n in cluster.nodes if n.port == int(master[1]))
    raise RuntimeError(f"slot {slot} is not served by any node")


def migrate_slot(
    cluster: RedisCluster,
    slot: int,
    target: RedisServer,
    *,
    batch: int = 10,
    pause_s: float = 0.0,
) -> int:
    """Move ``slot`` to ``target`` by hand, as ``redis-cli --cluster reshard`` does:
    IMPORTING / MIGRATING, MIGRATE the keys in batches (``pause_s`` between batches keeps
    the slot half-moved for a while, so clients meet ASK and TRYAGAIN), then SETSLOT NODE
    on every node. Returns the number of keys moved."""
    source = slot_owner(cluster, slot)
    if source.port == target.port:
        return 0
    ids = _cluster_ids(cluster.nodes)
    src, dst = source.client(), target.client()
    moved = 0
    try:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
        while True:
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            src.execute_command(
                "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "REPLACE", "KEYS", *keys
            )
            moved += len(keys)
            if pause_s:
                time.sleep(pause_s)
        for node in (target, source, *cluster.nodes):
            client = node.client()
            try:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
            finally:
                client.close()
    finally:
        src.close()
        dst.close()
    return moved

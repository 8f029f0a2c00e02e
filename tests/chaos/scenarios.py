"""The chaos scenarios, shared by the short suite (``make test``) and the long one
(``make chaos``); ``Scale`` sets how much load and how many faults."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.connection import RedisSettings
from tests.chaos.harness import LEASE, Figures, Harness, dump_tasks, now_ms
from tests.helpers import crc16_slot
from tests.redis_servers import (
    RedisCluster,
    RedisSentinel,
    RedisServer,
    migrate_slot,
    slot_owner,
)
from tests.tcp_proxy import ThreadedProxy

TTL_S = LEASE["ttl_ms"] / 1000


@dataclass(frozen=True)
class Scale:
    jobs: int  # per queue
    rounds: int  # fault rounds
    gap_s: float = 0.8  # between fault rounds
    drain_s: float = 40.0
    watchdog_s: float = 75.0  # below the short suite's 120 s pytest timeout


SHORT = Scale(jobs=200, rounds=6)
LONG = Scale(jobs=2000, rounds=24, gap_s=1.5, drain_s=120.0, watchdog_s=600.0)

Faults = Callable[[Harness], Awaitable[None]]


async def run(h: Harness, scale: Scale, faults: Faults) -> Figures:
    """Start, produce while injecting faults, heal, drain, compute, report."""
    await h.start()
    # Generous bounds on every phase: a hang fails the scenario with a traceback that
    # points at the stuck await instead of stalling the suite; past ``watchdog_s`` every
    # task's stack is printed, before pytest-timeout would kill the run without them.
    budget_s = scale.rounds * (scale.gap_s + 4 * TTL_S) + 60
    phase = "leader"
    watchdog = asyncio.create_task(_watchdog(h, scale.watchdog_s, lambda: phase))
    try:
        await h.leader(timeout_s=15)
        phase = "faults"
        faults_done = asyncio.Event()
        producer = asyncio.create_task(h.produce(scale.jobs, faults_done))
        try:
            async with asyncio.timeout(budget_s):
                await faults(h)
        finally:
            faults_done.set()
            phase = "producer"
            async with asyncio.timeout(120):
                await producer
        phase = "drain"
        await h.drain(scale.drain_s)
        phase = "compute"
        figures = await h.compute()
    finally:
        phase = "close"
        await h.close()
        watchdog.cancel()
    return figures


async def _watchdog(h: Harness, after_s: float, phase: Callable[[], str]) -> None:
    await asyncio.sleep(after_s)
    print(f"\nCHAOS WATCHDOG {h.scenario}: still in phase {phase()!r} after {after_s:.0f}s",
          file=sys.stderr, flush=True)  # fmt: skip
    dump_tasks()


# -- process faults ----------------------------------------------------------------------


async def kill_loops(h: Harness, rounds: int, gap_s: float, seed: int) -> None:
    """Rotate: a random worker SIGKILL, the leader SIGKILL, the leader SIGSTOPped for
    2 x TTL then SIGCONT (it wakes as a zombie leader that the fence must refuse)."""
    rng = random.Random(seed)
    for i in range(rounds):
        await asyncio.sleep(gap_s)
        kind = i % 3
        if kind == 0:
            live = [x for x in h.instances if h.alive(x) and not x.stopped]
            await h.kill(rng.choice(live))
            continue
        leader = await h.leader()
        h.mark_disruption()
        if kind == 1:
            await h.kill(leader)
        else:
            h.signal(leader, signal.SIGSTOP)
            await asyncio.sleep(2 * TTL_S)
            h.signal(leader, signal.SIGCONT)


def fault_counts(rounds: int) -> str:
    worker, leader, stop = (len(range(k, rounds, 3)) for k in range(3))
    return f"worker SIGKILL x{worker}, leader SIGKILL x{leader}, leader SIGSTOP x{stop}"


async def kill_loops_single(server: RedisServer, ledger: str, prefix: str, s: Scale) -> Figures:
    h = Harness("kill_loops/single", server.url, ledger, prefix, instances=3)
    f = await run(h, s, lambda h: kill_loops(h, s.rounds, s.gap_s, seed=1))
    f.extra = fault_counts(s.rounds)
    f.report()
    return f


# -- Redis faults --------------------------------------------------------------------------


async def redis_crash(server: RedisServer, ledger: str, prefix: str, s: Scale) -> Figures:
    """SIGKILL Redis under load and restart it on the same AOF (``server.persistence``)."""
    h = Harness(f"redis_crash/aof-{server.persistence}", server.url, ledger, prefix, instances=2)
    rounds = max(2, s.rounds // 3)

    async def faults(h: Harness) -> None:
        for _ in range(rounds):
            await asyncio.sleep(s.gap_s * 1.5)
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(server.start)

    f = await run(h, s, faults)
    f.extra = f"redis SIGKILL+restart x{rounds}"
    f.report()
    return f


async def client_kill_storm_and_freeze(
    server: RedisServer, ledger: str, prefix: str, s: Scale
) -> Figures:
    """CLIENT KILL TYPE normal every 300 ms, and Redis SIGSTOPped for 2 s (4 x the
    instances' socket timeout) every third round."""
    h = Harness("client_kill_storm+freeze", server.url, ledger, prefix, instances=3)
    kills = 0

    async def faults(h: Harness) -> None:
        nonlocal kills
        admin = server.client(socket_timeout=2)
        try:
            for i in range(s.rounds):
                if i % 3 == 2:
                    h.mark_disruption()
                    server.freeze()
                    await asyncio.sleep(2.0)
                    server.thaw()
                    continue
                deadline = time.monotonic() + s.gap_s
                while time.monotonic() < deadline:
                    kills += int(await asyncio.to_thread(admin.client_kill_filter, _type="normal"))
                    await asyncio.sleep(0.3)
        finally:
            admin.close()

    f = await run(h, s, faults)
    f.extra = f"connections killed={kills}, freezes={s.rounds // 3}"
    f.takeovers_ms = []  # a frozen Redis freezes the lease too: no takeover to time
    f.report()
    return f


async def proxy_isolation(server: RedisServer, ledger: str, prefix: str, s: Scale) -> Figures:
    """Instance 0 reaches Redis through a TCP proxy; when it leads, its connections are
    black-holed (no FIN: half-open) for 2 x TTL, or reset. Its lease must lapse by its
    own clock and another instance take over, with no double fire."""
    proxy = ThreadedProxy("127.0.0.1", server.port)
    via = f"redis://127.0.0.1:{proxy.port}/0"
    h = Harness("proxy_blackhole/reset", server.url, ledger, prefix, instances=3,
                instance_urls={0: via})  # fmt: skip
    isolated = 0

    async def faults(h: Harness) -> None:
        nonlocal isolated
        for i in range(s.rounds):
            await asyncio.sleep(s.gap_s)
            leader = await h.leader()
            if leader.index != 0:
                # Make instance 0 the leader: stop the others' leader for a moment.
                h.mark_disruption()
                await h.kill(leader)
                continue
            h.mark_disruption()
            isolated += 1
            proxy.set_mode("blackhole" if i % 2 else "reset")
            await asyncio.sleep(2 * TTL_S)
            proxy.set_mode("reset")
            proxy.set_mode("pass")

    try:
        f = await run(h, s, faults)
    finally:
        proxy.close()
    f.extra = f"leader isolations={isolated}"
    f.report()
    return f


# -- Cluster ---------------------------------------------------------------------------------


async def cluster_reshard(cluster: RedisCluster, ledger: str, prefix: str, s: Scale) -> Figures:
    """Three queues on a 3-master Cluster; worker and leader kills, and the first
    queue's slot migrated to another master and back under load (ASK / TRYAGAIN /
    MOVED on the way)."""
    queues = ("qa", "qb", "qc")
    h = Harness("cluster_reshard+kills", cluster.url, ledger, prefix, queues=queues,
                instances=3)  # fmt: skip
    slot = crc16_slot(f"{prefix}:{{{queues[0]}}}:wait")
    migrations = 0
    moved_keys = 0

    async def faults(h: Harness) -> None:
        nonlocal migrations, moved_keys
        kills = asyncio.create_task(kill_loops(h, s.rounds, s.gap_s, seed=3))
        try:
            while not kills.done():
                await asyncio.sleep(s.gap_s)
                owner = slot_owner(cluster, slot)
                target = next(n for n in cluster.nodes if n.port != owner.port)
                moved_keys += await asyncio.to_thread(
                    migrate_slot, cluster, slot, target, batch=5, pause_s=0.01
                )
                migrations += 1
        finally:
            await kills

    f = await run(h, s, faults)
    f.extra = f"slot {slot} migrations={migrations} keys moved={moved_keys}; " + fault_counts(
        s.rounds
    )
    f.report()
    return f


# -- Sentinel --------------------------------------------------------------------------------


async def sentinel_failover(
    ledger: str, prefix: str, s: Scale, *, wait: bool, failovers: int = 1, lag_s: float = 0.8
) -> Figures:
    """Kill the master under load while its replica is partitioned away: the replica is
    SIGSTOPped and its link cut for ``lag_s``, the master SIGKILLed, the replica resumed
    and promoted by Sentinel. Jobs are added with a 1.5 s delay, so a backlog exists when
    the master dies (fast workers would otherwise run most jobs before). Without WAIT,
    writes acknowledged during the lag are lost
    and ticks fired during it are fired again. With WAIT (adds and fires, 1 replica) and
    ``min-replicas-to-write 1`` / ``min-replicas-max-lag 1``, adds are acknowledged only
    once replicated. Reported; only the with-WAIT loss of acknowledged adds is expected
    to be 0."""
    topology = await asyncio.to_thread(
        RedisSentinel(
            min_replicas_to_write=1 if wait else 0, min_replicas_max_lag_s=1 if wait else 10
        ).start
    )
    name = "sentinel_failover/" + ("wait" if wait else "no-wait")
    replicas = {"wait_replicas": 1, "wait_timeout_ms": 300} if wait else {}
    producer = RedisSettings(url=topology.url, socket_timeout_s=1.0, connect_timeout_s=0.5,
                             retries=1, **replicas)  # fmt: skip
    h = Harness(name, topology.url, ledger, prefix, instances=3,
                runner={"socket_timeout_s": 1.0, **replicas}, producer=producer,
                job_opts={"delay": 1500})  # fmt: skip
    failover_s: list[float] = []

    async def faults(h: Harness) -> None:
        for _ in range(failovers):
            await asyncio.sleep(s.gap_s * 2)
            replica = topology.replica_node()
            master = topology.node(topology.master_port())
            # Partition the replica: frozen, and its link cut on the master's side, so
            # what the master accepts from now on never reaches it (a frozen replica
            # alone would still find the stream waiting in its socket buffer).
            replica.freeze()
            admin = master.client(socket_timeout=2)
            try:
                admin.client_kill_filter(_type="replica")
            finally:
                admin.close()
            await asyncio.sleep(lag_s)
            h.mark_disruption()
            kill = asyncio.create_task(asyncio.to_thread(topology.kill_master))
            await asyncio.to_thread(master.process.wait)  # type: ignore[union-attr]
            replica.thaw()
            old, took = await kill
            failover_s.append(took)
            try:
                await asyncio.to_thread(topology.rejoin, old)
            except RuntimeError:  # Sentinel did not reconfigure it in time: stop here
                break

    try:
        f = await run(h, s, faults)
    finally:
        await asyncio.to_thread(topology.cleanup)
    f.extra = (
        f"replica cut off {lag_s * 1000:.0f}ms before each of {failovers} failover(s); failover "
        + ", ".join(f"{t * 1000:.0f}ms" for t in failover_s)
        + f"; add errors retried={h.add_failures}"
    )
    f.takeovers_ms = []  # the lease moves with the data; the failover time is the figure
    f.report()
    return f


__all__ = [
    "LONG",
    "SHORT",
    "Scale",
    "client_kill_storm_and_freeze",
    "cluster_reshard",
    "kill_loops_single",
    "now_ms",
    "proxy_isolation",
    "redis_crash",
    "sentinel_failover",
]

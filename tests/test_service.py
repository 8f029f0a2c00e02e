"""The service as a user runs it: ``python -m engine run`` in a subprocess, over HTTP."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from helpers import wait_for

import engine.service as service
from engine.api import AuthConfig
from engine.service import ServiceOptions, resolve_redis
from tests.redis_servers import RedisServer, free_port

SLOW_PROCESSOR = """
import asyncio

async def slow(job, ctx):
    await ctx.manager.client.incr("ledger:" + job.id)
    await asyncio.sleep(1.0)
    return {"done": job.id}
"""

CONFIG = """
[engine]
prefix = "svc"

[schedules.slow]
queue = "slow-q"
cron = "0 0 1 1 *"
processor = "slowproc:slow"
concurrency = 1
"""


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_exit(self, timeout_s: float = 60.0) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout_s)


@asynccontextmanager
async def engine_process(tmp_path: Path, env: dict[str, str], *args: str) -> AsyncIterator[Proc]:
    port = free_port()
    log = tmp_path / f"engine-{port}.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine",
            "run",
            "--port",
            str(port),
            *args,
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    p = Proc(proc, port, log)
    try:
        yield p
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _env(tmp_path: Path, redis_url: str, secret: str) -> dict[str, str]:
    (tmp_path / "slowproc.py").write_text(textwrap.dedent(SLOW_PROCESSOR))
    (tmp_path / "engine.toml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "REDIS_"))}
    env.update(
        {
            "REDIS_URL": redis_url,
            "ENGINE_JWT_SECRET": secret,
            "ENGINE_CONFIG": str(tmp_path / "engine.toml"),
            "PYTHONPATH": str(tmp_path),
            "ENGINE_SHUTDOWN_TIMEOUT_S": "20",
        }
    )
    return env


async def _get(session: aiohttp.ClientSession, url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def _healthy(session: aiohttp.ClientSession, proc: Proc) -> bool:
    if proc.proc.returncode is not None:
        raise AssertionError(f"engine exited early:\n{proc.log.read_text()}")
    try:
        status, body = await _get(session, proc.base + "/api/queues/health")
    except aiohttp.ClientError:
        return False
    return status == 200 and "slow-q" in body["details"]


async def test_sigterm_mid_job_drains_and_loses_nothing(
    tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    server = redis_factory()
    secret = secrets.token_hex(32)
    token = AuthConfig.hs256(secret).mint("ops", "admin")
    env = _env(tmp_path, server.url, secret)
    r = aioredis.Redis.from_url(server.url, decode_responses=True)
    keys = "svc:{slow-q}:"
    async with aiohttp.ClientSession() as session:
        async with engine_process(tmp_path, env) as proc:
            await wait_for(lambda: _healthy(session, proc), timeout_s=30)
            # HTTP opens before setup registers the schedules (health says `starting`).
            await wait_for(lambda: r.exists(keys + "schedule:slow"), timeout_s=30)
            job_ids = []
            for _ in range(3):
                async with session.post(
                    proc.base + "/api/queues/slow/run",
                    headers={"Authorization": f"Bearer {token}"},
                ) as resp:
                    assert resp.status == 200
                    job_ids.append((await resp.json())["jobId"])

            events = await r.xrange(keys + "events")
            manual = [f for _, f in events if f.get("event") == "manual"]
            assert [(f["jobId"], f["by"]) for f in manual] == [(j, "ops") for j in job_ids]

            async def one_active() -> bool:
                return bool(await r.zcard(keys + "active"))

            await wait_for(one_active, timeout_s=30)
            running = (await r.zrange(keys + "active", 0, -1))[0]
            proc.proc.send_signal(signal.SIGTERM)
            assert await proc.wait_exit() == 0
        log = proc.log.read_text()
        # the job that was running finished during the drain; the others wait, none lost
        assert await r.zscore(keys + "completed", running) is not None
        assert await r.zcard(keys + "active") == 0
        for job_id in job_ids:
            states = [
                s
                for s in ("prioritized", "completed", "delayed", "failed")
                if await r.zscore(keys + s, job_id) is not None
            ]
            if await r.lpos(keys + "wait", job_id) is not None:
                states.append("wait")
            assert len(states) == 1, (job_id, states)
        assert not await r.exists(keys + "lease")  # leader lease released on exit
        order = [
            log.index("Signal received"),
            log.index("HTTP stopped"),
            log.index("Leader lease of queue slow-q released"),
            log.index("Workers drained"),
        ]
        assert order == sorted(order)
        assert secret not in log and token not in log

        # a restarted instance finishes what was left, each job exactly once
        async with engine_process(tmp_path, env) as proc:
            await wait_for(lambda: _healthy(session, proc), timeout_s=30)

            async def all_done() -> bool:
                return await r.zcard(keys + "completed") == 3

            await wait_for(all_done, timeout_s=30)
            proc.proc.send_signal(signal.SIGINT)
            assert await proc.wait_exit() == 0
    for job_id in job_ids:
        assert await r.get("ledger:" + job_id) == "1"
    await r.aclose()


async def test_api_only_and_worker_only(
    tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    server = redis_factory()
    secret = secrets.token_hex(32)
    token = AuthConfig.hs256(secret).mint("ops", "admin")
    env = _env(tmp_path, server.url, secret)
    r = aioredis.Redis.from_url(server.url, decode_responses=True)
    async with aiohttp.ClientSession() as session:
        async with engine_process(tmp_path, env, "--api-only") as proc:
            await wait_for(lambda: _healthy(session, proc), timeout_s=30)

            async def registered() -> bool:
                status, body = await _get(session, proc.base + "/api/schedules", token)
                return status == 200 and all(s["registered"] for s in body["schedules"])

            await wait_for(registered, timeout_s=30)
            async with session.post(
                proc.base + "/api/queues/slow/run", headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                assert resp.status == 200
            # no worker here: the job waits
            status, body = await _get(session, proc.base + "/api/queues/slow-q/stats", token)
            assert status == 200
            assert body["stats"]["waiting"] == 1
            proc.proc.send_signal(signal.SIGTERM)
            assert await proc.wait_exit() == 0
        # worker-only: no HTTP, needs no JWT key, and runs the waiting job
        env_worker = {k: v for k, v in env.items() if k != "ENGINE_JWT_SECRET"}
        async with engine_process(tmp_path, env_worker, "--worker-only") as proc:

            async def done() -> bool:
                if proc.proc.returncode is not None:
                    raise AssertionError(proc.log.read_text())
                return await r.zcard("svc:{slow-q}:completed") == 1

            await wait_for(done, timeout_s=30)
            with pytest.raises(aiohttp.ClientError):
                await _get(session, proc.base + "/api/queues/health")
            proc.proc.send_signal(signal.SIGTERM)
            assert await proc.wait_exit() == 0
    await r.aclose()


async def test_refuses_to_start_without_a_jwt_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "REDIS_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        "run",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"export ENGINE_JWT_SECRET=" in err
    assert b"-m engine token --role admin" in err


def test_the_startup_hint_prints_a_token_command_that_works_outside_the_virtualenv() -> None:
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "REDIS_"))}
    venv = sys.prefix
    started = subprocess.run(
        ["make", "-s", "-o", f"{venv}/.installed", "run", f"VENV={venv}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert started.returncode != 0
    [command] = [line.strip() for line in started.stderr.splitlines() if "engine token" in line]
    # A new terminal: the virtualenv is not activated, only the system's PATH.
    secret = secrets.token_hex(32)
    shell = {"PATH": "/usr/bin:/bin", "ENGINE_JWT_SECRET": secret, "HOME": env.get("HOME", "/")}
    minted = subprocess.run(
        ["sh", "-c", command], cwd=root, env=shell, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert minted.returncode == 0, (command, minted.stderr)
    assert AuthConfig.hs256(secret).verify(minted.stdout.strip()).is_admin


def test_private_redis_is_started_with_aof_and_owned_by_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_ping = service.ping

    def no_default_redis(host: str, port: int, timeout_s: float = 0.5) -> bool:
        return False if port == 6379 else real_ping(host, port, timeout_s)

    monkeypatch.setattr(service, "ping", no_default_redis)
    target = resolve_redis({}, tmp_path)
    try:
        assert target.server is not None
        assert "started a private redis-server" in target.how
        assert str(tmp_path / "redis") in target.how
        url = (tmp_path / "redis" / "url").read_text().strip()
        assert url == target.settings.url
        assert service.private_redis_url(tmp_path) == url
        args = target.server._args()
        assert args[args.index("--appendonly") + 1] == "yes"
        with pytest.raises(RuntimeError, match="another engine process owns"):
            resolve_redis({}, tmp_path)
    finally:
        target.stop()
    assert service.private_redis_url(tmp_path) is None
    # REDIS_URL wins, and its password never shows
    other = resolve_redis({"REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}, tmp_path)
    assert "hunter2" not in other.how and other.server is None


def test_service_options_from_env_and_flags() -> None:
    opts = ServiceOptions.from_env({"ENGINE_PORT": "4000", "ENGINE_HOST": "0.0.0.0"})
    assert (opts.host, opts.port) == ("0.0.0.0", 4000)
    assert ServiceOptions.from_env({"ENGINE_PORT": "4000"}, port=5000).port == 5000
    assert ServiceOptions.from_env({}).port == 3001
    with pytest.raises(ValueError, match="ENGINE_PORT"):
        ServiceOptions.from_env({"ENGINE_PORT": "http"})
    with pytest.raises(ValueError, match="port"):
        ServiceOptions(port=70000)


async def test_redis_down_at_startup_gives_503_then_recovers(
    tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    port = free_port()
    secret = secrets.token_hex(32)
    env = _env(tmp_path, f"redis://127.0.0.1:{port}/0", secret)
    async with aiohttp.ClientSession() as session, engine_process(tmp_path, env) as proc:

        async def unhealthy() -> bool:
            if proc.proc.returncode is not None:
                raise AssertionError(proc.log.read_text())
            try:
                status, body = await _get(session, proc.base + "/api/queues/health")
            except aiohttp.ClientError:
                return False
            return status == 503 and body["status"] == "unhealthy"

        await wait_for(unhealthy, timeout_s=30)
        redis_factory(port=port)  # Redis arrives late: the same process recovers
        await wait_for(lambda: _healthy(session, proc), timeout_s=60)

        async def registered() -> bool:
            token = AuthConfig.hs256(secret).mint("ops", "viewer")
            status, body = await _get(session, proc.base + "/api/schedules", token)
            return status == 200 and all(s["registered"] for s in body["schedules"])

        await wait_for(registered, timeout_s=60)
        proc.proc.send_signal(signal.SIGTERM)
        assert await proc.wait_exit() == 0


async def test_unsafe_lease_timing_fails_the_startup_check_and_exits_1(
    tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    server = redis_factory()
    env = _env(tmp_path, server.url, secrets.token_hex(32))
    # Valid on its own (renew <= ttl/3), but renew + the 5 s socket timeout outlives the
    # lease: a leader could act on a lease that has already expired.
    unsafe = CONFIG.replace(
        "[schedules.slow]", "[lease]\nttl_ms = 3000\nrenew_interval_ms = 1000\n\n[schedules.slow]"
    )
    (tmp_path / "engine.toml").write_text(unsafe)
    async with engine_process(tmp_path, env) as proc:
        assert await proc.wait_exit() == 1
    log = proc.log.read_text()
    assert "startup check failed" in log and "lease" in log
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        assert await client.keys("svc:*") == []  # nothing registered, nothing fired
    finally:
        await client.aclose()


def _fresh_env(secret: str) -> dict[str, str]:
    """The environment of a newcomer's ``make run``: no REDIS_URL, no ENGINE_DATA_DIR. The
    probed default address is a port nothing listens on, whatever this machine runs on 6379."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "REDIS_"))}
    env["ENGINE_JWT_SECRET"] = secret
    env["ENGINE_REDIS_PROBE"] = f"127.0.0.1:{free_port()}"
    return env


async def test_make_run_default_path_starts_a_private_redis_under_the_relative_data_dir(
    tmp_path: Path,
) -> None:
    # As `make run` runs it: the project's engine.toml in the working directory, the
    # default relative ENGINE_DATA_DIR (var), nothing answering on the probed address.
    (tmp_path / "engine.toml").write_text(
        (Path(__file__).parent.parent / "engine.toml").read_text()
    )
    env = _fresh_env(secrets.token_hex(32))
    async with aiohttp.ClientSession() as session, engine_process(tmp_path, env) as proc:

        async def healthy() -> bool:
            if proc.proc.returncode is not None:
                raise AssertionError(f"engine exited early:\n{proc.log.read_text()}")
            try:
                status, body = await _get(session, proc.base + "/api/queues/health")
            except aiohttp.ClientError:
                return False
            return status == 200 and "serpram-sync" in body["details"]

        await wait_for(healthy, timeout_s=60)
        assert (tmp_path / "var" / "redis" / "appendonlydir").is_dir()  # AOF in ./var/redis
        proc.proc.send_signal(signal.SIGTERM)
        try:
            assert await proc.wait_exit() == 0
        except TimeoutError:
            raise AssertionError(f"no exit after SIGTERM:\n{proc.log.read_text()}") from None
    assert "started a private redis-server" in proc.log.read_text()


async def test_a_private_redis_that_fails_to_start_shows_its_log_not_a_traceback(
    tmp_path: Path,
) -> None:
    # A file where redis-server wants its AOF directory: it logs why and exits.
    (tmp_path / "var" / "redis").mkdir(parents=True)
    (tmp_path / "var" / "redis" / "appendonlydir").write_text("")
    env = _fresh_env(secrets.token_hex(32))
    async with engine_process(tmp_path, env) as proc:
        assert await proc.wait_exit() == 1
    log = proc.log.read_text()
    assert "Can't open or create append-only dir" in log
    assert "Traceback" not in log and "FileNotFoundError" not in log


async def test_the_service_serves_through_the_edge_runner_with_its_limits(
    tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    env = _env(tmp_path, redis_factory().url, secrets.token_hex(32))
    env.update({"ENGINE_HTTP_HEADER_TIMEOUT_S": "0.5", "ENGINE_HTTP_KEEPALIVE_S": "600"})
    async with aiohttp.ClientSession() as session, engine_process(tmp_path, env) as proc:
        await wait_for(lambda: _healthy(session, proc), timeout_s=30)
        reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
        writer.write(b"GET /api/queues/health HTTP/1.1\r\n")  # and never the rest
        assert await asyncio.wait_for(reader.read(), 30) == b""  # closed by the server
        writer.close()
        proc.proc.send_signal(signal.SIGTERM)
        assert await proc.wait_exit() == 0
    env["ENGINE_HTTP_MAX_CONNECTIONS"] = "none"
    async with engine_process(tmp_path, env) as proc:
        assert await proc.wait_exit() == 2
    assert "ENGINE_HTTP_MAX_CONNECTIONS" in proc.log.read_text()


async def test_a_weak_dashboard_password_stops_startup_with_a_clear_error(tmp_path: Path) -> None:
    env = _env(tmp_path, f"redis://127.0.0.1:{free_port()}/0", secrets.token_hex(32))
    env["ENGINE_ADMIN_PASSWORD"] = "admin"
    async with engine_process(tmp_path, env) as proc:
        assert await proc.wait_exit() == 2
    log = proc.log.read_text()
    assert "ENGINE_ADMIN_PASSWORD is too weak" in log and "Traceback" not in log

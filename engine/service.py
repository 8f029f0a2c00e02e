"""The service process: ``python -m engine run``.

One process serves the HTTP API and runs the workers and schedulers of every declared
schedule (``engine.toml`` or the built-in SERPRAM and AYT). Its responsibilities:

1. Find Redis: ``REDIS_URL``, else one answering on 127.0.0.1:6379, else a private
   ``redis-server`` with AOF under ``./var/redis`` (and it says which).
2. Start the API at once, and register schedules / start workers in the background with
   backoff, so a Redis that is down at startup gives 503s, not a crash loop.
3. On SIGTERM/SIGINT shut down in order: stop HTTP intake, stop firing (and release the
   leader lease), drain workers (unfinished jobs go back to ``wait`` at once), close
   Redis, stop the private server. Exit 0.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from redis.exceptions import RedisError

from . import schedulers
from .alerts import setup_alerts
from .api import ApiSettings, AuthConfig, RunTarget, create_app
from .api.auth import AuthNotConfigured
from .api.dashboard import DashboardConfig, setup_dashboard
from .api.server import EdgeRunner, HttpLimits
from .config import EngineConfig, ScheduleConfig, load_config
from .connection import RedisSettings
from .errors import ScheduleNotFound, StartupCheckError
from .job import Job
from .manager import QueueManager
from .metrics import setup_metrics
from .redis_server import RedisServer, free_port, ping, redis_server_binary
from .scheduler import get_schedule_state, upsert_schedule

logger = logging.getLogger("engine.service")

DEFAULT_PORT = 3001
DEFAULT_HOST = "127.0.0.1"
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0
SETUP_BACKOFF_S = (0.5, 10.0)
DEFAULT_PROBE = "127.0.0.1:6379"


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """What ``python -m engine run`` runs. ``api``: serve HTTP; ``workers``: run the
    workers and schedulers of the declared schedules."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api: bool = True
    workers: bool = True
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    config_path: str | None = None
    data_dir: str = "var"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if self.shutdown_timeout_s < 0:
            raise ValueError("shutdown timeout must be >= 0")
        if not (self.api or self.workers):
            raise ValueError("nothing to run: --api-only and --worker-only exclude each other")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ServiceOptions:
        """``ENGINE_HOST``, ``ENGINE_PORT``, ``ENGINE_SHUTDOWN_TIMEOUT_S``,
        ``ENGINE_DATA_DIR``; keyword overrides (command-line flags) win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("ENGINE_HOST"):
            values["host"] = env["ENGINE_HOST"]
        for name, field, kind in (
            ("ENGINE_PORT", "port", int),
            ("ENGINE_SHUTDOWN_TIMEOUT_S", "shutdown_timeout_s", float),
        ):
            raw = env.get(name)
            if raw:
                try:
                    values[field] = kind(raw)
                except ValueError:
                    raise ValueError(f"{name} must be a number, got {raw!r}") from None
        if env.get("ENGINE_DATA_DIR"):
            values["data_dir"] = env["ENGINE_DATA_DIR"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# -- Redis ------------------------------------------------------------------------------


@dataclass(slots=True)
class RedisTarget:
    """The Redis the service uses, and the private server it started (if any)."""

    settings: RedisSettings
    how: str
    server: RedisServer | None = None
    lock: IO[str] | None = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()  # SIGTERM: redis-server flushes its AOF
            self.server = None
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def private_redis_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "redis"


def private_redis_url(data_dir: str | Path) -> str | None:
    """The URL of a private Redis another engine process started here, if it answers."""
    url_file = private_redis_dir(data_dir) / "url"
    try:
        url = url_file.read_text().strip()
    except OSError:
        return None
    port = url.rsplit(":", 1)[-1].split("/")[0]
    return url if port.isdigit() and ping("127.0.0.1", int(port)) else None


def probe_address(env: Mapping[str, str]) -> tuple[str, int]:
    """``ENGINE_REDIS_PROBE`` (``host:port``), the address tried when REDIS_URL is unset."""
    raw = env.get("ENGINE_REDIS_PROBE") or DEFAULT_PROBE
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"ENGINE_REDIS_PROBE must be host:port, got {raw!r}")
    return host, int(port)


def resolve_redis(env: Mapping[str, str], data_dir: str | Path) -> RedisTarget:
    """``REDIS_URL``, else the probed address (127.0.0.1:6379) if a Redis answers there,
    else a private ``redis-server``."""
    if env.get("REDIS_URL"):
        settings = RedisSettings.from_env(env)
        return RedisTarget(settings, f"Redis from REDIS_URL ({settings.redacted_url})")
    host, port = probe_address(env)
    if ping(host, port):
        return RedisTarget(
            RedisSettings.from_env({**env, "REDIS_URL": f"redis://{host}:{port}/0"}),
            f"Redis answering on {host}:{port} (set REDIS_URL to use another)",
        )
    redis_server_binary()  # RuntimeError with the install hint
    directory = private_redis_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    lock = (directory / "lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        other = private_redis_url(data_dir)
        raise RuntimeError(
            f"another engine process owns the private Redis in {directory}"
            + (f" ({other})" if other else "")
            + ". To run several instances, start one Redis and set REDIS_URL for all of them."
        ) from None
    server = RedisServer(port=free_port(), data_dir=directory, persistence="everysec")
    server.start()
    (directory / "url").write_text(server.url + "\n")
    how = (
        f"no REDIS_URL and nothing on {host}:{port}: started a private redis-server on "
        f"{server.url} (data and AOF in {directory}; stopped with the service)"
    )
    return RedisTarget(RedisSettings.from_env({**env, "REDIS_URL": server.url}), how, server, lock)


# -- declared schedules ------------------------------------------------------------------


def declared_schedules(config: EngineConfig) -> dict[str, ScheduleConfig]:
    """The enabled schedules: built-in SERPRAM and AYT, replaced or extended by the config."""
    merged = {**schedulers.BUILT_IN, **config.schedules}
    return {name: sc for name, sc in merged.items() if sc.enabled}


def run_targets(manager: QueueManager, declared: Mapping[str, ScheduleConfig]) -> list[RunTarget]:
    """``POST /api/queues/<schedule>/run`` for every declared schedule."""

    def target(sc: ScheduleConfig) -> RunTarget:
        async def run(actor: str, idempotency_key: str | None = None) -> Job:
            # run_schedule_now writes the `manual` audit event (who asked for the run).
            return await schedulers.run_now(sc.name, manager, actor, idempotency_key)

        return RunTarget(name=sc.name, queue=sc.queue, label=sc.name.upper(), run=run)

    return [target(sc) for sc in declared.values()]


def schedule_reader(manager: QueueManager, declared: Mapping[str, ScheduleConfig]) -> Any:
    async def read() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for sc in declared.values():
            try:
                state = await get_schedule_state(manager.store, sc.queue, sc.name)
            except ScheduleNotFound:  # declared here, not registered in Redis yet
                out.append({"name": sc.name, "queue": sc.queue, "registered": False})
                continue
            out.append({**state.to_dict(), "registered": True})
        return out

    return read


def build_manager(
    config: EngineConfig, target: RedisTarget, env: Mapping[str, str]
) -> QueueManager:
    prefix = env.get("ENGINE_PREFIX") or config.prefix or "engine"
    manager = QueueManager(settings=target.settings, prefix=prefix)
    for sc in declared_schedules(config).values():
        manager.create_queue(sc.queue, sc.definition.options)
    return manager


async def _setup(manager: QueueManager, config: EngineConfig, options: ServiceOptions) -> None:
    """Register the schedules and start workers and schedulers, retrying while Redis is
    unreachable (the API answers 503 meanwhile)."""
    delay = SETUP_BACKOFF_S[0]
    while True:
        try:
            # Refuses Redis < 7.0 and a lease the socket timeout makes unsafe (the service
            # then exits 1); warns when keys may be evicted.
            await manager.check(config.lease)
            if options.workers:
                await schedulers.init_all_schedulers(manager, config)
            else:
                for sc in declared_schedules(config).values():
                    await upsert_schedule(manager.store, sc.definition)
            break
        except (RedisError, OSError) as exc:
            logger.warning(
                "Redis unavailable during startup (%s); retrying in %.1fs",
                type(exc).__name__,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, SETUP_BACKOFF_S[1])
    names = ", ".join(declared_schedules(config))
    what = "workers and schedulers" if options.workers else "schedules registered (API only)"
    logger.info("Ready: %s for %s", what, names)


async def shutdown(manager: QueueManager, runner: web.AppRunner | None, timeout_s: float) -> None:
    """Stop HTTP intake, stop firing, drain workers, release leases, close Redis."""
    if runner is not None:
        await runner.cleanup()
        logger.info("HTTP stopped")
    # Schedulers stop firing (releasing their leader leases) while the workers drain
    # within timeout_s (the rest go back to wait at once), all queues side by side: the
    # whole takes timeout_s plus a fixed bound, whatever handlers and Redis do.
    await manager.close_all(timeout_s)
    logger.info("Workers drained, leases released, Redis closed")


async def serve(options: ServiceOptions, env: Mapping[str, str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    env = os.environ if env is None else env
    try:
        config = load_config(options.config_path, env)
        auth = AuthConfig.from_env(env) if options.api else None
        limits = HttpLimits.from_env(env)
        if options.api:
            DashboardConfig.from_env(env)  # a weak ENGINE_ADMIN_PASSWORD stops startup here
    except AuthNotConfigured as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"engine: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        target = await asyncio.to_thread(resolve_redis, env, options.data_dir)
    except (RuntimeError, ValueError) as exc:
        print(f"engine: {exc}", file=sys.stderr)
        print("engine: or point REDIS_URL at a running Redis >= 7.0", file=sys.stderr)
        return 1
    logger.info("Using %s", target.how)
    manager = build_manager(config, target, env)
    declared = declared_schedules(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner: web.AppRunner | None = None
    setup = asyncio.create_task(_setup(manager, config, options), name="engine-setup")
    # A failed startup check ends the service instead of leaving it half started.
    setup.add_done_callback(lambda t: None if t.cancelled() or not t.exception() else stop.set())
    exit_code = 0
    try:
        if auth is not None:
            app = create_app(
                manager,
                auth,
                run_targets=run_targets(manager, declared),
                schedules=schedule_reader(manager, declared),
                settings=ApiSettings(),
            )
            setup_metrics(app, manager)
            setup_alerts(app, manager, config.alerts)
            setup_dashboard(app, manager, env=env, auth=auth)
            runner = EdgeRunner(app, limits, access_log=None, shutdown_timeout=5.0)
            await runner.setup()
            site = web.TCPSite(runner, options.host, options.port)
            await site.start()
            port = runner.addresses[0][1]
            logger.info(
                "API on http://%s:%d (health: /api/queues/health, spec: /api/openapi.json)",
                options.host,
                port,
            )
        await stop.wait()
        logger.info("Signal received, shutting down")
    except OSError as exc:
        print(f"engine: cannot listen on {options.host}:{options.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        setup.cancel()
        try:
            await setup
        except asyncio.CancelledError:
            pass
        except StartupCheckError as exc:
            print(f"engine: startup check failed: {exc}", file=sys.stderr)
            exit_code = 1
        await shutdown(manager, runner, options.shutdown_timeout_s)
        await asyncio.to_thread(target.stop)
    return exit_code


def run(options: ServiceOptions) -> int:
    return asyncio.run(serve(options))


__all__ = [
    "ServiceOptions",
    "declared_schedules",
    "private_redis_url",
    "resolve_redis",
    "run",
    "serve",
    "shutdown",
]

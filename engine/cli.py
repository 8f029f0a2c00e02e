"""The ``python -m engine`` command.

``run`` starts the service (API + workers + schedulers). The operator commands (``stats``,
``jobs``, ``pause``, ``resume``, ``clean``, ``run-now``, ``schedules``, ``check``) talk to Redis
directly, with the same queues the service declares, and print the API's JSON shapes;
``token`` mints a development JWT from ``ENGINE_JWT_SECRET``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from .api.messages import clean_body, jobs_body, page_end, pause_body, run_body
from .api.payload import timestamp

COMMANDS = "run|stats|jobs|pause|resume|clean|run-now|schedules|check|token"
# Exit status of `check` when the queue is inconsistent (1 is any error).
INCONSISTENT = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m engine",
        description="Distributed job and cron scheduler engine on Redis.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar=COMMANDS)

    run = sub.add_parser("run", help="serve the API and run workers and schedulers")
    run.add_argument("--host", help="listen address (ENGINE_HOST, default 127.0.0.1)")
    run.add_argument("--port", type=int, help="listen port (ENGINE_PORT, default 3001)")
    only = run.add_mutually_exclusive_group()
    only.add_argument("--api-only", action="store_true", help="serve HTTP; run no workers")
    only.add_argument("--worker-only", action="store_true", help="run workers; serve no HTTP")
    run.add_argument("--config", help="TOML config (ENGINE_CONFIG, default ./engine.toml)")
    run.add_argument(
        "--shutdown-timeout",
        type=float,
        help="seconds running jobs get to finish on SIGTERM (ENGINE_SHUTDOWN_TIMEOUT_S, 30)",
    )
    run.add_argument("--log-level", help="ENGINE_LOG_LEVEL, default INFO")
    run.add_argument(
        "--log-format", choices=("text", "json"), help="ENGINE_LOG_FORMAT, default text"
    )

    stats = sub.add_parser("stats", help="job counts of every queue, or of one")
    stats.add_argument("queue", nargs="?")

    jobs = sub.add_parser("jobs", help="jobs of a queue in one state")
    jobs.add_argument("queue")
    jobs.add_argument("--state", default="waiting")
    jobs.add_argument("--start", type=int, default=0)
    jobs.add_argument("--end", type=int, default=9)

    for name in ("pause", "resume"):
        cmd = sub.add_parser(name, help=f"{name} a queue on every instance")
        cmd.add_argument("queue")

    clean = sub.add_parser("clean", help="remove finished jobs older than a grace period")
    clean.add_argument("queue")
    clean.add_argument("state", choices=("completed", "failed"))
    clean.add_argument("--grace-ms", type=int, default=3_600_000)

    run_now = sub.add_parser("run-now", help="run a declared schedule now (e.g. serpram)")
    run_now.add_argument("schedule")

    sub.add_parser("schedules", help="declared schedules, next fire times and state")

    check = sub.add_parser(
        "check",
        help=f"consistency check of a queue (exit status {INCONSISTENT} if inconsistent)",
    )
    check.add_argument("queue")
    check.add_argument("--sample", type=int, default=20, help="ids listed per finding")

    token = sub.add_parser("token", help="mint a development JWT from ENGINE_JWT_SECRET")
    token.add_argument(
        "--role", required=True, help="the token's role: admin (may mutate) or e.g. viewer"
    )
    token.add_argument("--sub", default=None, help="subject (default: your user name)")
    token.add_argument(
        "--ttl",
        type=int,
        default=3600,
        help="lifetime in seconds (at most ENGINE_JWT_MAX_LIFETIME_S, default 86400)",
    )
    return p


def _print(body: Any) -> None:
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment (containers)
        return "cli"


async def _operate(args: argparse.Namespace) -> int:
    from .config import load_config
    from .connection import RedisSettings
    from .service import (
        RedisTarget,
        build_manager,
        declared_schedules,
        private_redis_url,
        run_targets,
        schedule_reader,
    )

    env = dict(os.environ)
    config = load_config(None, env)
    if not env.get("REDIS_URL"):
        found = private_redis_url(env.get("ENGINE_DATA_DIR") or "var")
        if found:
            env["REDIS_URL"] = found
    # Never start a server for a one-shot command: no Redis found is an error to report.
    target = RedisTarget(RedisSettings.from_env(env), "REDIS_URL")
    manager = build_manager(config, target, env)
    try:
        return await _command(
            args, manager, config, declared_schedules, run_targets, schedule_reader
        )
    finally:
        await manager.close_all()
        target.stop()


async def _command(
    args: argparse.Namespace,
    manager: Any,
    config: Any,
    declared_schedules: Any,
    run_targets: Any,
    schedule_reader: Any,
) -> int:
    actor = _actor()
    cmd = args.command
    if cmd == "stats":
        if args.queue:
            _print(
                {
                    "success": True,
                    "stats": (await manager.get_stats(args.queue)).to_dict(),
                    "timestamp": timestamp(),
                }
            )
        else:
            stats = await manager.get_all_stats()
            _print(
                {
                    "success": True,
                    "queues": {n: s.to_dict() for n, s in stats.items()},
                    "timestamp": timestamp(),
                }
            )
    elif cmd == "jobs":
        # the API's rule: a range past a page stops at one page, one ending early is empty
        end = max(page_end(args.start, args.end), args.start)
        jobs = await manager.get_jobs(args.queue, args.state, args.start, end)
        if args.end < args.start:
            end, jobs = args.end, []
        _print(
            {
                "success": True,
                **jobs_body(args.queue, args.state, args.start, end, jobs),
                "timestamp": timestamp(),
            }
        )
    elif cmd in ("pause", "resume"):
        fn = manager.pause_queue if cmd == "pause" else manager.resume_queue
        changed = await fn(args.queue, actor)
        _print(
            {
                "success": True,
                **pause_body(args.queue, cmd == "pause", changed),
                "timestamp": timestamp(),
            }
        )
    elif cmd == "clean":
        fn = (
            manager.clean_completed_jobs if args.state == "completed" else manager.clean_failed_jobs
        )
        removed = await fn(args.queue, args.grace_ms, actor)
        _print(
            {
                "success": True,
                **clean_body(args.queue, args.state, args.grace_ms, removed),
                "timestamp": timestamp(),
            }
        )
    elif cmd == "run-now":
        targets = {t.name: t for t in run_targets(manager, declared_schedules(config))}
        found = targets.get(args.schedule)
        if found is None:
            print(
                f"engine: no declared schedule {args.schedule!r} (have: {', '.join(targets)})",
                file=sys.stderr,
            )
            return 1
        job = await found.run(actor)
        _print(
            {
                "success": True,
                **run_body(found.label, job.id, found.queue),
                "timestamp": timestamp(),
            }
        )
    elif cmd == "check":
        report = await manager.get_queue(args.queue).check_consistency(args.sample)
        _print({"success": True, "report": report.to_dict(), "timestamp": timestamp()})
        return 0 if report.ok else INCONSISTENT
    elif cmd == "schedules":
        _print(
            {
                "success": True,
                "schedules": await schedule_reader(manager, declared_schedules(config))(),
                "timestamp": timestamp(),
            }
        )
    return 0


def _token(args: argparse.Namespace) -> int:
    from .api.auth import AuthConfig, AuthNotConfigured

    try:
        auth = AuthConfig.from_env()
        sub = args.sub or _actor().removeprefix("cli:")
        print(auth.mint(sub, args.role or None, args.ttl))
    except AuthNotConfigured as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"engine: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from .logs import LogSettings, configure_logging
        from .service import ServiceOptions, run

        try:
            configure_logging(
                LogSettings.from_env(level=args.log_level, log_format=args.log_format)
            )
            options = ServiceOptions.from_env(
                host=args.host,
                port=args.port,
                api=not args.worker_only,
                workers=not args.api_only,
                config_path=args.config,
                shutdown_timeout_s=args.shutdown_timeout,
            )
        except ValueError as exc:
            print(f"engine: {exc}", file=sys.stderr)
            return 2
        return run(options)
    if args.command == "token":
        return _token(args)
    from redis.exceptions import RedisError

    from .errors import EngineError

    try:
        return asyncio.run(_operate(args))
    except (EngineError, ValueError, LookupError) as exc:
        print(f"engine: {exc}", file=sys.stderr)
        return 1
    except (RedisError, OSError) as exc:
        print(f"engine: Redis unavailable ({type(exc).__name__})", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"engine: {exc}", file=sys.stderr)
        return 1

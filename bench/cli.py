"""``python -m bench quick|full|<scenario> [...]``: run, print the table, write results.

``quick`` (what ``make bench`` runs) and ``full`` run every scenario and rewrite
``bench/RESULTS.md`` and ``bench/throughput.png``; naming scenarios runs just those
(quick profile unless ``--profile``) and only prints and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import report
from bench.harness import PROFILES, Bench
from bench.peers import PEERS, SYSTEMS
from bench.scenarios import EXTRAS, SCENARIOS
from engine.redis_server import redis_server_binary

RESULTS_DIR = Path(__file__).parent / "results"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _redis_version() -> str:
    out = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return next((p.split("=")[1] for p in out.split() if p.startswith("v=")), out.strip())


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu(),
        "python": platform.python_version(),
        "redis": _redis_version(),
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
    }


async def run(profile: str, scenarios: list[str], systems: list[str]) -> dict[str, Any]:
    started = time.monotonic()
    async with Bench(PROFILES[profile], systems) as bench:
        for name in scenarios:
            t0 = time.monotonic()
            print(f"-- {name} ...", file=sys.stderr, flush=True)
            await {**SCENARIOS, **EXTRAS}[name](bench)
            print(f"   {name} took {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
        metrics = [m.to_dict() for m in bench.metrics.values()]
        details = bench.details
    return {
        "meta": {
            "profile": profile,
            "rounds": PROFILES[profile].rounds,
            "scenarios": scenarios,
            "systems": systems,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "elapsed_s": time.monotonic() - started,
            "machine": machine(),
            "versions": {s: SYSTEMS[s].version() for s in systems},
            "settings": {s: SYSTEMS[s].settings for s in systems},
            "command": "python -m bench " + " ".join(sys.argv[1:]),
            "commands": [],
        },
        "metrics": metrics,
        "details": details,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "what", nargs="+", help=f"quick, full, or scenarios: {', '.join([*SCENARIOS, *EXTRAS])}"
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), help="override the profile")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset of: " + ", ".join(SYSTEMS),
    )
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/...)")
    args = parser.parse_args(argv)

    whole = args.what[0] in ("quick", "full")
    if whole:
        profile, scenarios = args.profile or args.what[0], list(SCENARIOS)
    else:
        unknown = [w for w in args.what if w not in SCENARIOS and w not in EXTRAS]
        if unknown:
            parser.error(f"unknown scenario(s): {', '.join(unknown)}")
        profile, scenarios = args.profile or "quick", args.what
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    missing = [s for s in systems if s not in SYSTEMS]
    if missing:
        parser.error(f"unknown system(s): {', '.join(missing)}")
    absent = [s for s in systems if s in PEERS and _version(SYSTEMS[s].package) is None]
    if absent:
        parser.error(
            f"peer package(s) not installed: {', '.join(absent)}; "
            "run `make bench` or `pip install -e '.[bench]'` (or pass --systems engine)"
        )

    results = asyncio.run(run(profile, scenarios, systems))
    results["meta"]["commands"] = [
        "make bench    # = pip install -e '.[dev,bench]' && python -m bench quick",
        f"{Path(sys.executable).name} -m bench {' '.join(sys.argv[1:] if argv is None else argv)}",
    ]
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS_DIR / f"{profile}-{stamp}.json"
    out.write_text(json.dumps(results, indent=1))
    print(report.table(results))
    for target, measured, met in report.targets(results):
        print(f"target: {target}: {measured} -> {met}")
    if whole:
        (RESULTS_DIR / "latest.json").write_text(json.dumps(results, indent=1))
        report.chart(results)
        report.RESULTS_MD.write_text(report.markdown(results))
        print(f"wrote {report.RESULTS_MD} and {report.CHART}", file=sys.stderr)
    print(f"results: {out}", file=sys.stderr)

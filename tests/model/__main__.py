"""Run the model-based test from the command line (the long run, and replays).

    .venv/bin/python -m tests.model --seed 17 --steps 200
    .venv/bin/python -m tests.model --seed 1 --seed 2 --seed 3 --steps 300 --random-rate 0.02

Prints one report per seed (summary, every violation, the steps); exits 1 if any run
found a violation.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tests.model.driver import ModelConfig, run_model


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.model")
    parser.add_argument("--seed", type=int, action="append", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--random-rate", type=float, default=0.0)
    parser.add_argument("--stop-on-violation", action="store_true")
    parser.add_argument("--calm", action="store_true", help="no faults: the baseline")
    parser.add_argument("--quiet", action="store_true", help="summaries only")
    args = parser.parse_args()
    failed = 0
    for seed in args.seed:
        config = ModelConfig(
            steps=args.steps,
            random_rate=args.random_rate,
            stop_on_violation=args.stop_on_violation,
            calm=args.calm,
        )
        report = asyncio.run(run_model(seed, config))
        print(report.summary() if args.quiet and report.ok else report.format(), flush=True)
        failed += not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

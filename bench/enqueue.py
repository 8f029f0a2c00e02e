"""Enqueue throughput and bytes per waiting job for this engine alone.

Kept for ``python -m bench.enqueue``; the scenarios now live in ``bench/scenarios`` and
``python -m bench enqueue memory`` runs them side by side with the peers.
"""

from __future__ import annotations

import sys

from bench.cli import main as cli_main


def main() -> None:
    cli_main(["enqueue", "memory", "--systems", "engine", *sys.argv[1:]])


if __name__ == "__main__":
    main()

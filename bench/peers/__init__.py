"""The systems under test: this engine and the peers a user would pick instead."""

from __future__ import annotations

from bench.peers.arq import Arq
from bench.peers.base import NotSupported, System, WorkerSpec
from bench.peers.bullmq import BullMQ
from bench.peers.ours import Ours
from bench.peers.rq import RQ
from bench.peers.saq import SAQ

# Order fixes each system's Redis db number on the private server.
SYSTEMS: dict[str, type[System]] = {s.name: s for s in (Ours, BullMQ, SAQ, Arq, RQ)}
PEERS = [name for name in SYSTEMS if name != Ours.name]

__all__ = ["PEERS", "SYSTEMS", "NotSupported", "System", "WorkerSpec"]

"""The test fault layer's TCP proxy under its first name (kept for the tests and the chaos
suite that use it): see tests/faults/proxy.py for rules per command, random faults from a
seed, stalls and refused commands."""

from __future__ import annotations

from tests.faults.proxy import MODES, FaultProxy, Mode, ThreadedFaultProxy

TcpProxy = FaultProxy
ThreadedProxy = ThreadedFaultProxy

__all__ = ["MODES", "Mode", "TcpProxy", "ThreadedProxy"]

"""A RESP-aware TCP proxy between an engine client and a real redis-server that injects
faults per command, or at random from a seed.

Every client connection gets its own upstream connection. The proxy splits the client's
bytes into commands (a pipeline is many commands in one write) and Redis's bytes into
replies, so a fault hits one command of a pipeline and every other reply still arrives, in
order. A :class:`Rule` says which commands (:class:`~tests.faults.resp.Match`: command
name, engine script name, key pattern; the ``nth`` match on; ``times`` times) get which
:class:`Fault`:

- ``delay``: forward the command, hold its reply ``seconds`` (past the client's socket
  timeout, the command IS applied and redis-py times out and resends it);
- ``cut``: forward the command, wait for its reply (so it was applied), drop the reply and
  reset the connection;
- ``reset``: reset the connection before forwarding it (not applied; commands before it in
  the same pipeline were);
- ``stall``: hold everything, every connection both ways, for ``seconds``, from this command
  on (it is forwarded when the stall ends);
- ``error``: answer an error reply in Redis's place without forwarding the command (Redis
  "refused": ``OOM``, ``NOREPLICAS``, ``BUSY``, ``TRYAGAIN``, ``LOADING``, ``MASTERDOWN``,
  ``READONLY``, ``CLUSTERDOWN`` with Redis's own texts, see ``errors.py``, or any text).

:meth:`FaultProxy.randomize` draws faults for matching commands from a seeded RNG with a
weighted mix and an optional cool-down (so the client's single resend gets through).
Every fault that fires is appended to :attr:`FaultProxy.log`.

The whole-proxy modes of the first proxy (tests/tcp_proxy.py) are kept: ``pass``,
``reset`` (reset every connection and refuse new ones), ``blackhole`` (hold everything,
send no FIN, until the mode changes) and ``delay`` (each chunk the client writes waits
``delay_s``). A stream that is not RESP (TLS) is forwarded raw, without rules; so is a
connection once it subscribes or monitors (pushes have no request to pair with).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from tests.faults.errors import REDIS_ERRORS, error_reply
from tests.faults.resp import (
    PUSH_COMMANDS,
    Command,
    CommandSplitter,
    Match,
    ProtocolError,
    ReplySplitter,
)

T = TypeVar("T")
Mode = Literal["pass", "reset", "blackhole", "delay"]
MODES: tuple[str, ...] = ("pass", "reset", "blackhole", "delay")
FaultKind = Literal["delay", "cut", "reset", "stall", "error"]
FAULT_KINDS: tuple[str, ...] = ("delay", "cut", "reset", "stall", "error")


@dataclass(frozen=True, slots=True)
class Fault:
    """What happens to one command; build with the class methods."""

    kind: FaultKind
    seconds: float = 0.0
    error: str = ""

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        if self.kind == "error" and not self.error:
            raise ValueError("an error fault needs the error (a code such as OOM, or a text)")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        return cls("delay", seconds)

    @classmethod
    def cut(cls) -> Fault:
        return cls("cut")

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        return cls("stall", seconds)

    @classmethod
    def refuse(cls, error: str) -> Fault:
        """An error reply in Redis's place (``OOM``, ``BUSY``, ... or a full text)."""
        return cls("error", error=error)

    @classmethod
    def parse(cls, spec: str, seconds: float = 0.0) -> Fault:
        """``delay``, ``cut``, ``reset``, ``stall`` or ``error:<CODE>``."""
        if spec.startswith("error:"):
            return cls.refuse(spec.split(":", 1)[1])
        return cls(spec, seconds)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self.kind == "error":
            return f"error:{self.error}"
        return f"{self.kind}({self.seconds:g}s)" if self.seconds else self.kind


@dataclass(slots=True, eq=False)
class Rule:
    """Fire ``fault`` on the ``nth`` matching command and the ``times - 1`` after it
    (``times=None``: every one from the ``nth`` on)."""

    match: Match
    fault: Fault
    nth: int = 1
    times: int | None = 1
    seen: int = 0
    fired: int = 0

    def offer(self, cmd: Command) -> Fault | None:
        if not self.match(cmd):
            return None
        self.seen += 1
        if self.seen < self.nth or (self.times is not None and self.fired >= self.times):
            return None
        self.fired += 1
        return self.fault

    @property
    def spent(self) -> bool:
        return self.times is not None and self.fired >= self.times


@dataclass(slots=True)
class _Random:
    rng: random.Random
    rate: float
    mix: list[tuple[Fault, float]]
    match: Match
    cooldown_s: float
    quiet_until: float = 0.0

    def draw(self, cmd: Command) -> Fault | None:
        if not self.match(cmd):
            return None
        roll = self.rng.random()  # one draw per matching command: replayable by seed
        pick = self.rng.random()
        now = time.monotonic()
        if now < self.quiet_until or roll >= self.rate:
            return None
        self.quiet_until = now + self.cooldown_s
        total = sum(w for _, w in self.mix)
        acc = 0.0
        for fault, weight in self.mix:
            acc += weight / total
            if pick < acc:
                return fault
        return self.mix[-1][0]


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One fault that fired: wall-clock time (s), the command's number among all the
    proxy has seen (from 1), connection number, the command."""

    at: float
    index: int
    conn: int
    command: str
    fault: Fault
    source: str  # "rule" or "random"


_RAW = object()  # slot: from here on, forward Redis's bytes as they come
_EOF = object()  # slot: Redis closed the connection


@dataclass(slots=True)
class _Slot:
    """What the client gets back for one command, in order."""

    inject: bytes | None = None  # an error reply of ours (not forwarded)
    delay_s: float = 0.0
    cut: bool = False
    fault: FaultRecord | None = None


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Conn:
    n: int
    client_reader: asyncio.StreamReader
    client_writer: asyncio.StreamWriter
    up_reader: asyncio.StreamReader
    up_writer: asyncio.StreamWriter
    slots: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    replies: ReplySplitter = field(default_factory=ReplySplitter)
    reply_data: asyncio.Event = field(default_factory=asyncio.Event)
    up_eof: bool = False
    raw: bool = False
    closed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self, *, flush_upstream: bool = False) -> None:
        """Reset the client's side. Upstream: reset too, or with ``flush_upstream`` a
        plain close, so that what was already forwarded still reaches Redis."""
        if not self.closed:
            self.closed = True
            _rst(self.client_writer)
            if flush_upstream:
                self.up_writer.close()
            else:
                self.up_writer.transport.abort()
            self.reply_data.set()
            self.slots.put_nowait(_EOF)


class FaultProxy:
    """Listens on 127.0.0.1:``port`` (0 = any free port) and forwards to the target."""

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.requested_port = port
        self.port = 0
        self.mode: Mode = "pass"
        self.delay_s = 0.0
        self.accepted = 0
        self.commands = 0
        self.rules: list[Rule] = []
        self.log: list[FaultRecord] = []
        self._random: _Random | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._numbers = itertools.count(1)
        self._flowing = asyncio.Event()
        self._stall_until = 0.0
        self._held = False  # blackhole or stall(None): until resume()

    # -- control ----------------------------------------------------------------

    async def start(self) -> FaultProxy:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.requested_port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def add_rule(
        self,
        fault: Fault,
        match: Match | None = None,
        *,
        nth: int = 1,
        times: int | None = 1,
    ) -> Rule:
        """Arm a rule; rules are tried in the order they were added, first match wins."""
        if nth < 1 or (times is not None and times < 1):
            raise ValueError("nth and times must be at least 1")
        rule = Rule(match or Match(), fault, nth, times)
        self.rules.append(rule)
        return rule

    def remove_rule(self, rule: Rule) -> None:
        with contextlib.suppress(ValueError):
            self.rules.remove(rule)

    def clear_rules(self) -> None:
        self.rules.clear()

    def randomize(
        self,
        seed: int,
        rate: float,
        mix: Mapping[str, float],
        *,
        match: Match | None = None,
        delay_s: float = 1.0,
        stall_s: float = 1.0,
        cooldown_s: float = 0.0,
    ) -> None:
        """Random faults: each matching command draws from ``random.Random(seed)``; with
        probability ``rate`` it gets a fault picked by weight from ``mix`` (keys
        ``delay``, ``cut``, ``reset``, ``stall``, ``error:<CODE>``). After a fault, none
        for ``cooldown_s`` (let the client's resend through). The draws depend only on the
        seed and the sequence of matching commands."""
        if not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        faults: list[tuple[Fault, float]] = []
        for spec, weight in mix.items():
            kind = spec.split(":", 1)[0]
            seconds = {"delay": delay_s, "stall": stall_s}.get(kind, 0.0)
            if kind == "error" and spec.split(":", 1)[1].upper() not in REDIS_ERRORS:
                raise ValueError(f"unknown error code in {spec!r}")
            if weight < 0:
                raise ValueError("weights must be >= 0")
            faults.append((Fault.parse(spec, seconds), weight))
        if not faults or sum(w for _, w in faults) <= 0:
            raise ValueError("mix needs at least one fault with a positive weight")
        self._random = _Random(random.Random(seed), rate, faults, match or Match(), cooldown_s)

    def stop_random(self) -> None:
        self._random = None

    def stall(self, seconds: float | None) -> None:
        """Hold everything (new bytes both ways, on every connection) for ``seconds``, or
        until :meth:`resume` with ``None``. Connections stay open; nothing is lost."""
        self._flowing.clear()
        if seconds is None:
            self._held = True
            return
        until = time.monotonic() + seconds
        if until > self._stall_until:
            self._stall_until = until
        asyncio.get_running_loop().call_later(seconds, self._maybe_flow)

    def resume(self) -> None:
        """End a stall or a black hole now."""
        self._held = False
        self._stall_until = 0.0
        if self.mode == "blackhole":
            self.mode = "pass"
        self._flowing.set()

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def _maybe_flow(self) -> None:
        if not self._held and self.mode != "blackhole" and time.monotonic() >= self._stall_until:
            self._flowing.set()

    def reset_all(self) -> None:
        """Reset every open connection now (new ones are accepted)."""
        for conn in list(self._conns):
            conn.abort()
        self._conns.clear()

    def set_mode(self, mode: Mode, delay_s: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.delay_s = mode, delay_s
        if mode == "blackhole":
            self._flowing.clear()
        else:
            self._held = False
            self._maybe_flow()
        if mode == "reset":
            self.reset_all()

    # -- connections --------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "reset":
            _rst(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _rst(writer)
            return
        conn = _Conn(next(self._numbers), reader, writer, up_reader, up_writer)
        if self.mode == "reset":  # reset while we connected
            conn.abort()
            return
        self._conns.add(conn)
        conn.tasks = [
            asyncio.create_task(self._requests(conn)),
            asyncio.create_task(self._upstream(conn)),
            asyncio.create_task(self._replies(conn)),
        ]

    def _decide(self, conn: _Conn, cmd: Command) -> tuple[Fault, FaultRecord] | None:
        self.commands += 1
        fault: Fault | None = None
        source = "rule"
        for rule in list(self.rules):
            fault = rule.offer(cmd)
            if fault is not None:
                break
        if fault is None and self._random is not None:
            fault, source = self._random.draw(cmd), "random"
        if fault is None:
            return None
        record = FaultRecord(time.time(), self.commands, conn.n, cmd.summary(), fault, source)
        self.log.append(record)
        return fault, record

    async def _send_up(self, conn: _Conn, data: bytes | bytearray) -> None:
        if data and not conn.closed:
            conn.up_writer.write(bytes(data))
            await conn.up_writer.drain()

    async def _requests(self, conn: _Conn) -> None:
        splitter = CommandSplitter()
        try:
            while not conn.closed:
                data = await conn.client_reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()
                if self.mode == "delay" and self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if conn.closed:
                    return
                if conn.raw:
                    await self._send_up(conn, data)
                    continue
                try:
                    commands = splitter.feed(data)
                except ProtocolError:
                    conn.raw = True
                    conn.slots.put_nowait(_RAW)
                    await self._send_up(conn, splitter.buf)
                    splitter.buf.clear()
                    continue
                if not await self._forward(conn, commands, splitter):
                    return
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # The client hung up: Redis learns it when bytes flow again (a partition hides
            # the FIN too), after everything already forwarded.
            if not conn.closed:
                with contextlib.suppress(Exception):
                    await self._flowing.wait()
                    conn.up_writer.close()

    async def _forward(
        self, conn: _Conn, commands: list[Command], splitter: CommandSplitter
    ) -> bool:
        out = bytearray()
        for i, cmd in enumerate(commands):
            decided = self._decide(conn, cmd)
            fault, record = decided if decided else (None, None)
            if fault is None or fault.kind in ("delay", "cut"):
                out += cmd.raw
                if cmd.args and cmd.args[0].upper() in PUSH_COMMANDS:
                    conn.raw = True
                    conn.slots.put_nowait(_RAW)
                    for rest in commands[i + 1 :]:
                        out += rest.raw
                    out += splitter.buf
                    splitter.buf.clear()
                    break
                slot = _Slot(fault=record)
                if fault is not None and fault.kind == "delay":
                    slot.delay_s = fault.seconds
                elif fault is not None:
                    slot.cut = True
                conn.slots.put_nowait(slot)
            elif fault.kind == "error":
                conn.slots.put_nowait(_Slot(inject=error_reply(fault.error), fault=record))
            elif fault.kind == "reset":
                await self._send_up(conn, out)
                # The commands before this one in the pipeline still reach Redis.
                self._drop(conn, flush_upstream=True)
                return False
            else:  # stall: everything already forwarded goes, this one waits
                await self._send_up(conn, out)
                out.clear()
                self.stall(fault.seconds)
                await self._flowing.wait()
                if conn.closed:
                    return False
                out += cmd.raw
                conn.slots.put_nowait(_Slot())
        await self._send_up(conn, out)
        return True

    def _drop(self, conn: _Conn, *, flush_upstream: bool = False) -> None:
        conn.abort(flush_upstream=flush_upstream)
        self._conns.discard(conn)

    async def _upstream(self, conn: _Conn) -> None:
        try:
            while True:
                data = await conn.up_reader.read(65536)
                if not data:
                    break
                conn.replies.feed(data)
                conn.reply_data.set()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            conn.up_eof = True
            conn.reply_data.set()
            conn.slots.put_nowait(_EOF)

    async def _next_reply(self, conn: _Conn) -> bytes | None:
        while True:
            reply = conn.replies.take()
            if reply is not None:
                return reply
            if conn.up_eof or conn.closed:
                return None
            conn.reply_data.clear()
            await conn.reply_data.wait()

    async def _replies(self, conn: _Conn) -> None:
        writer = conn.client_writer
        try:
            while not conn.closed:
                slot = await conn.slots.get()
                if slot is _EOF:
                    if conn.up_eof and not conn.replies.buf:
                        break
                    continue
                if slot is _RAW:
                    await self._pipe_raw(conn)
                    break
                assert isinstance(slot, _Slot)
                if slot.inject is not None:
                    reply: bytes | None = slot.inject
                else:
                    reply = await self._next_reply(conn)
                    if reply is None:
                        break
                    if slot.cut:
                        self._drop(conn)  # applied, reply lost
                        return
                    if slot.delay_s:
                        await asyncio.sleep(slot.delay_s)
                await self._flowing.wait()
                if conn.closed or writer.is_closing():
                    return
                writer.write(reply)
                if conn.slots.empty():
                    await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            if not conn.closed:
                with contextlib.suppress(Exception):
                    await self._flowing.wait()
                    writer.close()
                conn.closed = True
                self._conns.discard(conn)

    async def _pipe_raw(self, conn: _Conn) -> None:
        while not conn.closed:
            data = bytes(conn.replies.buf)
            conn.replies.buf.clear()
            if data:
                await self._flowing.wait()
                conn.client_writer.write(data)
                await conn.client_writer.drain()
            elif conn.up_eof:
                return
            else:
                conn.reply_data.clear()
                await conn.reply_data.wait()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        self._held = False
        self._flowing.set()
        tasks = [t for conn in self._conns for t in conn.tasks]
        self.reset_all()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ThreadedFaultProxy:
    """A :class:`FaultProxy` on its own event loop in a daemon thread (for synchronous
    code and subprocess-based scenarios). Control calls run on the proxy's loop."""

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.proxy = self._run(FaultProxy(target_host, target_port, port).start())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            return fn(*args, **kwargs)

        return self._run(call())

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def log(self) -> list[FaultRecord]:
        return list(self.proxy.log)

    def set_mode(self, mode: Mode, delay_s: float = 0.0) -> None:
        self._call(self.proxy.set_mode, mode, delay_s)

    def add_rule(self, fault: Fault, match: Match | None = None, **kwargs: Any) -> Rule:
        rule: Rule = self._call(self.proxy.add_rule, fault, match, **kwargs)
        return rule

    def clear_rules(self) -> None:
        self._call(self.proxy.clear_rules)

    def randomize(self, seed: int, rate: float, mix: Mapping[str, float], **kwargs: Any) -> None:
        self._call(self.proxy.randomize, seed, rate, mix, **kwargs)

    def stop_random(self) -> None:
        self._call(self.proxy.stop_random)

    def stall(self, seconds: float | None) -> None:
        self._call(self.proxy.stall, seconds)

    def resume(self) -> None:
        self._call(self.proxy.resume)

    def reset_all(self) -> None:
        self._call(self.proxy.reset_all)

    def close(self) -> None:
        self._run(self.proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


__all__ = [
    "FAULT_KINDS",
    "MODES",
    "Fault",
    "FaultProxy",
    "FaultRecord",
    "Match",
    "Mode",
    "Rule",
    "ThreadedFaultProxy",
]

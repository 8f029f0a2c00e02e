"""An asyncio TCP proxy for fault injection between one engine instance and Redis.

Modes (switch at any time with :meth:`TcpProxy.set_mode`):

- ``pass``: forward bytes both ways;
- ``reset``: abort every open connection with a TCP RST (SO_LINGER 0), and reset new
  ones as soon as they are accepted;
- ``blackhole``: keep every socket open but forward nothing and send no FIN, as a
  network partition or a dead NAT entry does (a half-open connection);
- ``delay``: forward each chunk after ``delay_s``.

Run it on the test's own loop (``await proxy.start()``) or, for synchronous code and
subprocess-based scenarios, in a thread of its own (:class:`ThreadedProxy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "reset", "blackhole", "delay"]
MODES: tuple[str, ...] = ("pass", "reset", "blackhole", "delay")


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Listens on 127.0.0.1:``port`` (0 = any free port) and forwards to target."""

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.requested_port = port
        self.port = 0
        self.mode: Mode = "pass"
        self.delay_s = 0.0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()

    async def start(self) -> TcpProxy:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.requested_port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def set_mode(self, mode: Mode, delay_s: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.delay_s = mode, delay_s
        if mode == "blackhole":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "reset":
            for pair in list(self._conns):
                for writer in pair:
                    _rst(writer)
            self._conns.clear()

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
        pair = (writer, up_writer)
        self._conns.add(pair)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                await self._flowing.wait()  # blackhole: hold the bytes, send no FIN
                if self.mode == "delay" and self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if pair not in self._conns:
                    return
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if pair in self._conns and self._flowing.is_set():
                self._conns.discard(pair)
                for w in pair:
                    w.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for pair in list(self._conns):
            for w in pair:
                w.transport.abort()
        self._conns.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class ThreadedProxy:
    """A :class:`TcpProxy` on its own event loop in a daemon thread."""

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.proxy = self._call(TcpProxy(target_host, target_port, port).start())

    def _call(self, coro: object) -> TcpProxy:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    @property
    def port(self) -> int:
        return self.proxy.port

    def set_mode(self, mode: Mode, delay_s: float = 0.0) -> None:
        self._loop.call_soon_threadsafe(self.proxy.set_mode, mode, delay_s)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

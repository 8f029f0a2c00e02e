"""A private ``redis-server`` child process for ``python -m engine run``.

When no Redis is configured and none answers on the default address, the service starts
one of these (AOF on, private data dir, loopback only). Test topologies built on it
(TLS, Cluster, Sentinel, freeze and kill) live in ``tests/redis_servers.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MIN_REDIS_VERSION = (7, 0)
INSTALL_HINT = (
    "redis-server (>= 7.0) was not found on PATH. Install it, e.g. "
    "`sudo apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS)."
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """Path of ``redis-server``, or ``RuntimeError`` saying how to install it."""
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    return path


def ping(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when a Redis server answers PING on host:port (no auth needed to tell)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` child process on a loopback port with a private data dir.

    ``persistence`` selects AOF (``"always"``, ``"everysec"``) or none (``None``).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: str | Path | None = None,
        persistence: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.port = port or free_port()
        self._own_dir = data_dir is None
        # Absolute: redis-server changes into --dir before it opens --logfile, so a relative
        # path would be resolved twice (``var/redis/var/redis/redis.log``) and fail.
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="engine-redis-")).resolve()
        self.persistence = persistence
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _port_args(self) -> list[str]:
        return ["--port", str(self.port)]

    def _args(self) -> list[str]:
        args = [
            redis_server_binary(),
            *self._port_args(),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        if self.persistence:
            args += ["--appendonly", "yes", "--appendfsync", self.persistence]
        else:
            args += ["--appendonly", "no"]
        return args + list(self.extra_args)

    def _answers(self) -> bool:
        return ping("127.0.0.1", self.port)

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # What redis-server prints before its log file is open (a bad argument, a log path
        # it cannot open) goes to stderr: keep it for the error message.
        with (self.data_dir / "redis.stderr").open("wb") as stderr:
            self.process = subprocess.Popen(self._args(), stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited at start on port {self.port} "
                    f"(exit code {self.process.returncode}):\n{self.log_tail()}"
                )
            if self._answers():
                return self
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout_s}s")

    def log_tail(self, lines: int = 10) -> str:
        """The end of the server's log file, else of its stderr, else a note saying so."""
        for name in ("redis.log", "redis.stderr"):
            try:
                text = (self.data_dir / name).read_text(errors="replace").strip()
            except OSError:
                continue
            if text:
                return "\n".join(text.splitlines()[-lines:])
        return f"(no output in {self.data_dir / 'redis.log'} or redis.stderr)"

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown save."""
        if self.process is not None:
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers)."""
        if self.process is None:
            return
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def cleanup(self) -> None:
        """Stop and remove the data dir if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

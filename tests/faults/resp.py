"""Just enough RESP to split a byte stream into commands (client -> Redis) and replies
(Redis -> client), so the fault proxy can act on one command of a pipeline and keep the
replies in order.

Requests are arrays of bulk strings (what every client sends) or inline commands (``PING``
typed into telnet). Replies are any RESP2 or RESP3 value, attributes included. Nothing here
interprets a value: a command is its raw bytes plus its arguments, a reply its raw bytes.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field

from engine.scripts import SOURCES

CRLF = b"\r\n"
# Engine scripts by SHA1 of their source (as loaded: includes spliced), for EVALSHA and EVAL.
SCRIPT_NAMES: dict[str, str] = {
    hashlib.sha1(src.source.encode()).hexdigest(): name for name, src in SOURCES.items()
}
_SCRIPT_COMMANDS = {b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"}
# After these a connection carries pushes, not one reply per command: the proxy stops
# parsing it and forwards raw bytes.
PUSH_COMMANDS = {b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE", b"MONITOR"}


class ProtocolError(ValueError):
    """Bytes that are not RESP (TLS, garbage): the proxy forwards such a stream raw."""


@dataclass(frozen=True, slots=True)
class Command:
    """One request: its raw bytes and its arguments (``args[0]`` is the command name)."""

    raw: bytes
    args: tuple[bytes, ...]

    @property
    def name(self) -> str:
        return self.args[0].decode(errors="replace").upper() if self.args else ""

    @property
    def script(self) -> str | None:
        """The engine script an EVAL / EVALSHA runs (``None`` if not one of ours)."""
        if len(self.args) < 2 or self.args[0].upper() not in _SCRIPT_COMMANDS:
            return None
        head = self.args[0].upper()
        if head.startswith(b"EVALSHA"):
            return SCRIPT_NAMES.get(self.args[1].decode(errors="replace").lower())
        if head.startswith(b"EVAL"):
            return SCRIPT_NAMES.get(hashlib.sha1(self.args[1]).hexdigest())
        return self.args[1].decode(errors="replace")  # FCALL: the function name

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of a script call (its ``numkeys`` arguments); for any other command
        every argument after the name (a superset of its keys, good enough to match)."""
        if self.args and self.args[0].upper() in _SCRIPT_COMMANDS and len(self.args) >= 3:
            try:
                n = int(self.args[2])
            except ValueError:
                n = 0
            return tuple(a.decode(errors="replace") for a in self.args[3 : 3 + n])
        return tuple(a.decode(errors="replace") for a in self.args[1:])

    def summary(self) -> str:
        script = self.script
        return f"{self.name} {script}" if script else self.name


@dataclass(frozen=True, slots=True)
class Match:
    """Which commands a rule applies to; every given field must match (none = all).

    ``command``: the command name (``EVALSHA``, ``BZPOPMIN``; case-insensitive);
    ``script``: an engine script name (``move_to_active``), matching EVALSHA and EVAL;
    ``key``: an fnmatch pattern that one of the command's keys must match (see
    :attr:`Command.keys`).
    """

    command: str | None = None
    script: str | None = None
    key: str | None = None

    def __call__(self, cmd: Command) -> bool:
        if self.command is not None and cmd.name != self.command.upper():
            return False
        if self.script is not None and cmd.script != self.script:
            return False
        return self.key is None or any(fnmatch.fnmatchcase(k, self.key) for k in cmd.keys)


def _line(buf: bytes | bytearray, pos: int) -> tuple[bytes, int] | None:
    end = buf.find(CRLF, pos)
    if end < 0:
        return None
    return bytes(buf[pos:end]), end + 2


def _int(raw: bytes) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ProtocolError(f"bad length {raw[:20]!r}") from None


def scan_value(buf: bytes | bytearray, pos: int = 0) -> int | None:
    """The end offset of the one RESP value that starts at ``pos``, or ``None`` if the
    buffer holds only part of it. Raises :class:`ProtocolError` for non-RESP bytes."""
    if pos >= len(buf):
        return None
    kind = buf[pos : pos + 1]
    got = _line(buf, pos + 1)
    if got is None:
        if len(buf) - pos > 65536:
            raise ProtocolError("a RESP header line longer than 64 KiB")
        return None
    head, after = got
    if kind in b"+-:_,#(":  # simple string, error, integer, null, double, boolean, bignum
        return after
    if kind in b"$!=":  # bulk string, bulk error, verbatim string
        n = _int(head)
        if n < 0:
            return after
        end = after + n + 2
        return end if end <= len(buf) else None
    if kind in b"*~>%|":  # array, set, push, map, attribute
        n = _int(head)
        if n < 0:
            return after
        if kind in b"%|":
            n *= 2
        cur: int | None = after
        for _ in range(n):
            assert cur is not None
            cur = scan_value(buf, cur)
            if cur is None:
                return None
        if kind == b"|":  # an attribute is followed by the value it annotates
            return scan_value(buf, cur) if cur is not None else None
        return cur
    raise ProtocolError(f"not RESP: {bytes(buf[pos : pos + 16])!r}")


def parse_command(buf: bytes | bytearray, pos: int = 0) -> tuple[Command, int] | None:
    """The request that starts at ``pos`` and where it ends, or ``None`` if incomplete."""
    if pos >= len(buf):
        return None
    first = buf[pos : pos + 1]
    if first != b"*":
        if not (first.isalpha() or first in b"\r\n "):
            raise ProtocolError(f"not a RESP request: {bytes(buf[pos : pos + 16])!r}")
        got = _line(buf, pos)
        if got is None:
            if len(buf) - pos > 65536:
                raise ProtocolError("an inline command longer than 64 KiB")
            return None
        line, end = got
        return Command(bytes(buf[pos:end]), tuple(line.split())), end
    got = _line(buf, pos + 1)
    if got is None:
        return None
    head, cur = got
    n = _int(head)
    args: list[bytes] = []
    for _ in range(max(n, 0)):
        if cur >= len(buf):
            return None
        if buf[cur : cur + 1] != b"$":
            raise ProtocolError("a request array of something else than bulk strings")
        got = _line(buf, cur + 1)
        if got is None:
            return None
        size_raw, start = got
        size = _int(size_raw)
        end = start + size
        if end + 2 > len(buf):
            return None
        args.append(bytes(buf[start:end]))
        cur = end + 2
    return Command(bytes(buf[pos:cur]), tuple(args)), cur


@dataclass(slots=True)
class CommandSplitter:
    """Feed bytes as they arrive; take whole commands out."""

    buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Command]:
        self.buf += data
        out: list[Command] = []
        pos = 0
        while True:
            got = parse_command(self.buf, pos)
            if got is None:
                break
            cmd, pos = got
            if cmd.args:  # an empty inline line is skipped, as Redis does
                out.append(cmd)
        del self.buf[:pos]
        return out


@dataclass(slots=True)
class ReplySplitter:
    """Feed bytes as they arrive; take whole replies out."""

    buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> None:
        self.buf += data

    def take(self) -> bytes | None:
        end = scan_value(self.buf)
        if end is None:
            return None
        out = bytes(self.buf[:end])
        del self.buf[:end]
        return out


def encode_command(*args: bytes | str | int) -> bytes:
    """A request as every client sends it (array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        raw = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)

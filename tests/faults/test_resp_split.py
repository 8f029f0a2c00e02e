"""The proxy's RESP splitting, whatever the chunking of the stream (Hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.scripts import SOURCES
from tests.faults.resp import (
    Command,
    CommandSplitter,
    Match,
    ProtocolError,
    ReplySplitter,
    encode_command,
    parse_command,
)

args = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(args, min_size=1, max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
def test_a_pipeline_splits_into_its_commands_however_it_arrives(
    commands: list[list[bytes]], cuts: list[int]
) -> None:
    stream = b"".join(encode_command(*c) for c in commands)
    splitter = CommandSplitter()
    got: list[Command] = []
    for chunk in _chunks(stream, cuts):
        got += splitter.feed(chunk)
    assert [list(c.args) for c in got] == commands
    assert b"".join(c.raw for c in got) == stream
    assert not splitter.buf


def _resp(value: object) -> bytes:
    if isinstance(value, bool):
        return b"#t\r\n" if value else b"#f\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if value is None:
        return b"_\r\n"
    if isinstance(value, str):
        return b"-ERR " + value.encode() + b"\r\n"
    if isinstance(value, dict):
        return b"%%%d\r\n" % len(value) + b"".join(_resp(k) + _resp(v) for k, v in value.items())
    assert isinstance(value, list)
    return b"*%d\r\n" % len(value) + b"".join(_resp(v) for v in value)


scalars = (
    st.integers(-(2**63), 2**63 - 1)
    | st.binary(max_size=30)
    | st.none()
    | st.booleans()
    | st.text("abc xyz", max_size=10)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(values, min_size=1, max_size=6), st.lists(st.integers(0, 10_000), max_size=12))
def test_replies_split_into_whole_values_however_they_arrive(
    replies: list[object], cuts: list[int]
) -> None:
    encoded = [_resp(v) for v in replies]
    splitter = ReplySplitter()
    got: list[bytes] = []
    for chunk in _chunks(b"".join(encoded), cuts):
        splitter.feed(chunk)
        while (one := splitter.take()) is not None:
            got.append(one)
    assert got == encoded


def test_inline_commands_and_non_resp_bytes() -> None:
    assert CommandSplitter().feed(b"PING\r\n\r\nECHO hi\r\n")[1].args == (b"ECHO", b"hi")
    with pytest.raises(ProtocolError):
        parse_command(b"\x16\x03\x01\x02\x00")  # a TLS ClientHello


def test_script_calls_are_named_and_keyed() -> None:
    src = SOURCES["add_job"].source
    import hashlib

    sha = hashlib.sha1(src.encode()).hexdigest()
    by_sha = CommandSplitter().feed(encode_command("EVALSHA", sha, 2, "k1", "k2", "arg"))[0]
    by_body = CommandSplitter().feed(encode_command("eval", src, 1, "k1", "arg"))[0]
    assert (by_sha.script, by_sha.keys) == ("add_job", ("k1", "k2"))
    assert (by_body.script, by_body.keys) == ("add_job", ("k1",))
    assert Match(script="add_job", key="k2")(by_sha)
    assert not Match(script="add_job", key="k2")(by_body)
    assert not Match(command="EVAL")(by_sha)

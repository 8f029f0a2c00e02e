"""The HTTP edge against hostile clients, over raw sockets: idle and slow connections are
closed, open connections are bounded, protocol errors are JSON that echoes nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import orjson
import pytest
from test_api_helpers import Api, serve

from engine import QueueManager
from engine.api.server import HttpLimits
from tests.helpers import wait_for

# Short limits so the tests see them act; the defaults are in HttpLimits.
FAST = HttpLimits(keepalive_s=0.5, header_timeout_s=0.5, max_connections=4)


@pytest.fixture
async def api(manager: QueueManager) -> AsyncIterator[Api]:
    manager.create_queue("serpram-sync")
    async with serve(manager, limits=FAST) as api:
        yield api


async def _connect(api: Api) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(api.base)
    assert url.hostname is not None and url.port is not None
    return await asyncio.open_connection(url.hostname, url.port)


async def _closed_by_server(reader: asyncio.StreamReader, timeout_s: float = 10.0) -> bytes:
    """Everything the server sent until it closed the connection (fails if it never does)."""
    data = await asyncio.wait_for(reader.read(), timeout_s)
    assert reader.at_eof()
    return data


def _response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


async def test_an_idle_connection_is_closed(api: Api) -> None:
    reader, writer = await _connect(api)
    assert await _closed_by_server(reader) == b""
    writer.close()


async def test_a_half_sent_request_head_is_closed(manager: QueueManager) -> None:
    # The head deadline on its own: keep-alive far longer than the test.
    limits = HttpLimits(keepalive_s=600, header_timeout_s=0.5)
    async with serve(manager, limits=limits) as api:
        await _half_sent_head_is_closed(api)


async def _half_sent_head_is_closed(api: Api) -> None:
    reader, writer = await _connect(api)
    writer.write(b"GET /api/queues/health HTTP/1.1\r\nHost: x\r\n")  # no blank line, ever
    await writer.drain()

    async def trickle() -> None:  # a slow-loris client: a byte now and then does not help
        for _ in range(100):
            await asyncio.sleep(0.1)
            writer.write(b"X")
            await writer.drain()

    task = asyncio.create_task(trickle())
    try:
        assert await _closed_by_server(reader) == b""
    finally:
        task.cancel()
        writer.close()


async def test_a_finished_keepalive_connection_is_closed(api: Api) -> None:
    reader, writer = await _connect(api)
    writer.write(b"GET /api/queues/health HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    status, headers, _ = _response(await reader.readuntil(b"\r\n\r\n"))
    assert status == 200
    await reader.readexactly(int(headers["content-length"]))
    assert await _closed_by_server(reader) == b""  # idle after its response
    writer.close()


async def test_open_connections_are_bounded(api: Api) -> None:
    held = [await _connect(api) for _ in range(FAST.max_connections)]
    reader, writer = await _connect(api)
    status, headers, body = _response(await _closed_by_server(reader))
    assert status == 503 and headers["content-type"] == "application/json"
    assert orjson.loads(body)["error"] == "too many connections"
    writer.close()
    for _, w in held:
        w.close()

    async def accepted_again() -> bool:
        status, _, _ = await api.call("GET", "/api/queues/health")
        return status == 200

    await wait_for(accepted_again, timeout_s=10)


JWT_LIKE = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcHMifQ.c2VjcmV0c2lnbmF0dXJl"


@pytest.mark.parametrize(
    "request_bytes",
    [
        # a header line past 8 KiB carrying a token
        b"GET /api/queues/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + JWT_LIKE.encode() * 200
        + b"\r\n\r\n",
        # a URL past 8 KiB
        b"GET /api/queues/" + JWT_LIKE.encode() * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        # bad framing: both Content-Length and chunked, and a malformed request line
        b"POST /api/queues/x/pause HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz" + JWT_LIKE.encode() + b"\r\n\r\n",
        b"G\x00T /" + JWT_LIKE.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header" + JWT_LIKE.encode() + b": 1\r\n\r\n",
    ],
    ids=["long-header", "long-url", "cl-and-chunked", "bad-method", "bad-header-name"],
)
async def test_protocol_errors_are_json_and_echo_nothing(
    api: Api, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await _connect(api)
    with caplog.at_level(logging.DEBUG):
        writer.write(request_bytes)
        await writer.drain()
        raw = await _closed_by_server(reader)
    writer.close()
    status, headers, body = _response(raw)
    assert status == 400
    assert headers["content-type"] == "application/json"
    reply = orjson.loads(body)
    assert reply["success"] is False and reply["error"]
    assert JWT_LIKE[:12] not in raw.decode("latin-1")
    assert JWT_LIKE[:12] not in caplog.text
    # one WARNING line naming the client, never an ERROR with a traceback
    lines = [r for r in caplog.records if "Malformed HTTP request" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING]
    assert "127.0.0.1" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_http_limits_from_env() -> None:
    limits = HttpLimits.from_env(
        {
            "ENGINE_HTTP_KEEPALIVE_S": "5",
            "ENGINE_HTTP_HEADER_TIMEOUT_S": "2.5",
            "ENGINE_HTTP_MAX_CONNECTIONS": "10",
        }
    )
    assert limits == HttpLimits(keepalive_s=5, header_timeout_s=2.5, max_connections=10)
    assert HttpLimits.from_env({}) == HttpLimits()
    assert HttpLimits().keepalive_s <= 75 and HttpLimits().header_timeout_s <= 60
    with pytest.raises(ValueError, match="ENGINE_HTTP_MAX_CONNECTIONS"):
        HttpLimits.from_env({"ENGINE_HTTP_MAX_CONNECTIONS": "0"})
    with pytest.raises(ValueError, match="ENGINE_HTTP_KEEPALIVE_S"):
        HttpLimits.from_env({"ENGINE_HTTP_KEEPALIVE_S": "forever"})

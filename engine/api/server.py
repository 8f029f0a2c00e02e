"""The HTTP server under the app: connection limits, timeouts and protocol-error answers.

aiohttp's defaults suit a trusted network: a keep-alive of an hour, no limit on the time a
client takes to send its request head, no bound on open connections, and protocol errors
(a header over 8 KiB, bad framing) answered in plain text that quotes the offending input
(part of a JWT, say). :class:`EdgeRunner` serves an app with:

- ``keepalive_s``: an idle connection (between requests) is closed after this;
- ``header_timeout_s``: a request head (request line and headers) must be complete this
  long after the connection opens or after its first byte arrives, else the connection is
  closed (a slow-loris client holds nothing for long);
- ``max_connections``: connections past this get a JSON 503 and are closed at once;
- protocol errors answered with the API's JSON error shape, never echoing the input, and
  logged as one WARNING line with the client address and the error's type only.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadStatusLine, LineTooLong
from aiohttp.web_protocol import RequestHandler

from .errors import error_response

logger = logging.getLogger("engine.api.http")

DEFAULT_KEEPALIVE_S = 15.0
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 1024
MAX_LINE_BYTES = 8190  # request line and each header line, aiohttp's default


@dataclass(frozen=True, slots=True)
class HttpLimits:
    keepalive_s: float = DEFAULT_KEEPALIVE_S
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if not 0 < self.keepalive_s <= 3600:
            raise ValueError("ENGINE_HTTP_KEEPALIVE_S must be > 0 and at most 3600")
        if not 0 < self.header_timeout_s <= 300:
            raise ValueError("ENGINE_HTTP_HEADER_TIMEOUT_S must be > 0 and at most 300")
        if self.max_connections < 1:
            raise ValueError("ENGINE_HTTP_MAX_CONNECTIONS must be at least 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HttpLimits:
        """``ENGINE_HTTP_KEEPALIVE_S``, ``ENGINE_HTTP_HEADER_TIMEOUT_S``,
        ``ENGINE_HTTP_MAX_CONNECTIONS``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, field, kind in (
            ("ENGINE_HTTP_KEEPALIVE_S", "keepalive_s", float),
            ("ENGINE_HTTP_HEADER_TIMEOUT_S", "header_timeout_s", float),
            ("ENGINE_HTTP_MAX_CONNECTIONS", "max_connections", int),
        ):
            raw = env.get(name)
            if raw:
                try:
                    values[field] = kind(raw)
                except ValueError:
                    raise ValueError(f"{name} must be a number, got {raw!r}") from None
        return cls(**values)


def _protocol_error_text(exc: BaseException | None) -> str:
    if isinstance(exc, LineTooLong):
        return "request line or header too long"
    if isinstance(exc, BadStatusLine):
        return "malformed request line"
    return "malformed request"


_TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
)


class EdgeRequestHandler(RequestHandler):
    """aiohttp's connection handler with a request-head deadline, a connection bound and
    JSON protocol errors."""

    def __init__(self, manager: web.Server, *, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        manager = self._manager
        if manager is not None and len(manager.connections) > self._limits.max_connections:
            body = error_response(503, "too many connections").body
            assert isinstance(body, bytes)
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_TOO_MANY % (len(body), body))
            logger.warning(
                "Connection refused: %d open (ENGINE_HTTP_MAX_CONNECTIONS)",
                self._limits.max_connections,
            )
            self.force_close()
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        idle = self._current_request is None and not self._messages
        if idle and self._head_timer is None:
            self._arm_head_timer()  # the first byte of a new request head
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._cancel_head_timer()  # a complete head arrived

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self._loop.call_later(self._limits.header_timeout_s, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._current_request is None and not self._messages:
            logger.debug("Closing a connection whose request head did not arrive in time")
            self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Unlike aiohttp's, never quotes the input or the exception's text."""
        remote = request.remote or "?"
        if status >= 500:
            logger.error("Internal error on a request from %s (%s)", remote, type(exc).__name__)
            text = HTTPStatus(status).phrase.lower()
        else:
            logger.warning("Malformed HTTP request from %s (%s)", remote, type(exc).__name__)
            text = _protocol_error_text(exc)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started, cannot send the error")
        resp = error_response(status, text)
        resp.force_close()
        return resp


class EdgeServer(web.Server):
    def __init__(self, base: web.Server, limits: HttpLimits) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        self.limits = limits

    def __call__(self) -> RequestHandler:
        return EdgeRequestHandler(self, loop=self._loop, limits=self.limits, **self._kwargs)


class EdgeRunner(web.AppRunner):
    """``web.AppRunner`` serving through :class:`EdgeRequestHandler`."""

    def __init__(self, app: web.Application, limits: HttpLimits | None = None, **kwargs: Any):
        self.limits = limits or HttpLimits()
        kwargs.setdefault("max_line_size", MAX_LINE_BYTES)
        kwargs.setdefault("max_field_size", MAX_LINE_BYTES)
        super().__init__(app, keepalive_timeout=self.limits.keepalive_s, **kwargs)

    async def _make_server(self) -> web.Server:
        return EdgeServer(await super()._make_server(), self.limits)

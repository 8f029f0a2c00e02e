"""Errors of the HTTP layer and the one middleware that turns every failure into JSON.

Nothing internal reaches a client: no traceback, no Redis URL, no exception text from
libraries. Domain errors map to 4xx; a Redis that is down or frozen maps to 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import orjson
from aiohttp import web
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import (
    InvalidJobState,
    JobNotFound,
    LeaseLost,
    QueueNotFound,
    ScheduleNotFound,
)
from .auth import AuthFailed

logger = logging.getLogger("engine.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REDIS_DOWN = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ConnectionError,
    TimeoutError,
)
_STATUS_TEXT = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    413: "request body too large",
    415: "unsupported media type",
    503: "service unavailable",
}


class ApiError(Exception):
    """An error with an HTTP status and a message that is safe to return."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_response(
    status: int,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, object] = {"success": False, "error": message}
    if field is not None:
        body["field"] = field
    body["timestamp"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return web.Response(
        body=orjson.dumps(body) + b"\n",
        status=status,
        content_type="application/json",
        headers=headers,
    )


def unauthorized(message: str) -> ApiError:
    challenge = 'Bearer realm="engine"'
    if message != "missing bearer token":
        challenge += ', error="invalid_token"'
    return ApiError(401, message, headers={"WWW-Authenticate": challenge})


def _is_oom(exc: ResponseError) -> bool:
    return str(exc).startswith("OOM")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.field, exc.headers)
    except AuthFailed as exc:
        err = unauthorized(str(exc))
        return error_response(err.status, err.message, None, err.headers)
    except (QueueNotFound, JobNotFound, ScheduleNotFound) as exc:
        return error_response(404, str(exc))
    except (InvalidJobState, LeaseLost) as exc:
        return error_response(409, str(exc))
    except ValueError as exc:
        return error_response(400, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(
            exc.status, _STATUS_TEXT.get(exc.status, exc.reason.lower()), None, headers
        )
    except _REDIS_DOWN as exc:
        logger.warning(
            "Redis unavailable during %s %s (%s)", request.method, request.path, type(exc).__name__
        )
        return error_response(503, "Redis unavailable", None, {"Retry-After": "1"})
    except ResponseError as exc:
        if _is_oom(exc):
            logger.warning("Redis is out of memory during %s %s", request.method, request.path)
            return error_response(503, "Redis out of memory", None, {"Retry-After": "5"})
        logger.error("Redis error during %s %s", request.method, request.path)
        return error_response(500, "internal error")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # The traceback goes to DEBUG only: it can hold job data or connection details.
        logger.error("Unhandled %s during %s %s", type(exc).__name__, request.method, request.path)
        logger.debug("Traceback", exc_info=True)
        return error_response(500, "internal error")

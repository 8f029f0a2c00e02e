"""The request guard: body limit, bearer authentication, role check and Redis deadline.

Access levels come from the routes table (``public``, ``read``, ``admin``); a route the
table does not know (404/405) passes through to aiohttp's own answer.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .auth import AuthFailed, bearer_token
from .errors import ApiError, Handler, unauthorized
from .payload import duplicate_query_param
from .state import ACCESS, AUTH, PRINCIPAL, QUERY_PARAMS, SETTINGS

PUBLIC = "public"
READ = "read"
ADMIN = "admin"
STREAM = "stream"  # long-lived responses (the dashboard's live events): no deadline


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    length = request.content_length
    if length is not None and length > settings.body_limit:
        raise ApiError(413, f"request body too large (limit {settings.body_limit} bytes)")
    route_name = request.match_info.route.name
    access = request.app[ACCESS].get(route_name) if route_name else None
    if access in (READ, ADMIN):
        try:
            principal = request.app[AUTH].verify(bearer_token(request.headers.get("Authorization")))
        except AuthFailed as exc:
            raise unauthorized(str(exc)) from None
        if access == ADMIN and not principal.is_admin:
            raise ApiError(403, "admin role required")
        request[PRINCIPAL] = principal
    if route_name and access is not None:
        allowed = request.app[QUERY_PARAMS].get(route_name, frozenset())
        unknown = sorted(set(request.query) - allowed)
        if unknown:
            raise ApiError(400, f"unknown query parameter {unknown[0]!r}", field=unknown[0])
        twice = duplicate_query_param(request)
        if twice is not None:
            raise ApiError(400, f"query parameter {twice!r} given more than once", field=twice)
    if access == STREAM:
        return await handler(request)
    async with asyncio.timeout(settings.request_timeout_s):
        return await handler(request)

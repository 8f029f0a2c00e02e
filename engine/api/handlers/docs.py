"""``GET /api/openapi.json``: the OpenAPI 3 document of the routes table."""

from __future__ import annotations

from aiohttp import web

from ..payload import reply
from ..state import OPENAPI_DOC


async def openapi(request: web.Request) -> web.Response:
    doc = request.app[OPENAPI_DOC]
    return reply(doc)

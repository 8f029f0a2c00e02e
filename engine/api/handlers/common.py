"""Path parameters and headers shared by the handlers."""

from __future__ import annotations

from aiohttp import web

from ...keys import MAX_JOB_ID_LEN, validate_queue_name
from ...queue import Queue
from ...scheduler.admin import validate_idempotency_key
from ..errors import ApiError
from ..state import MANAGER, PRINCIPAL


def queue_of(request: web.Request) -> Queue:
    """The registered queue named in the path: 400 for a malformed name, 404 if unknown.

    Nothing touches Redis before the name is known, so a hostile name creates no key."""
    name = request.match_info["name"]
    try:
        validate_queue_name(name)
    except ValueError:
        raise ApiError(400, "invalid queue name", field="name") from None
    try:
        return request.app[MANAGER].get_queue(name)
    except LookupError:
        raise ApiError(404, f"queue {name!r} not found") from None


def job_id_of(request: web.Request) -> str:
    job_id = request.match_info["job_id"]
    if not job_id or len(job_id) > MAX_JOB_ID_LEN or any(c in job_id for c in "{}\x00"):
        raise ApiError(400, "invalid job id", field="job_id")
    return job_id


def actor_of(request: web.Request) -> str:
    """The verified subject of the request, recorded with every mutation (audit)."""
    return request[PRINCIPAL].subject


def idempotency_key_of(request: web.Request) -> str | None:
    """The optional ``Idempotency-Key`` header of a run-now call: 400 naming it if bad."""
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        try:
            validate_idempotency_key(key)
        except ValueError as exc:
            raise ApiError(400, str(exc), field="Idempotency-Key") from None
    return key

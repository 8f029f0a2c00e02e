"""The dashboard's HTTP side: authentication, CSRF defence, JSON reads, actions, live feed.

Security model:

- Every route (pages, static files, JSON, the live stream) needs credentials: HTTP basic
  auth as ``ENGINE_ADMIN_USER`` (default ``admin``) with ``ENGINE_ADMIN_PASSWORD``, both
  compared with :func:`hmac.compare_digest`, or an API bearer token. The basic-auth user is
  an admin; a token is an admin only with the ``admin`` role.
- Basic credentials are ambient (the browser re-sends them to any request for the site),
  so a mutating call needs more than credentials: an ``X-CSRF-Token`` header equal to an
  HMAC of the user under a key derived from the admin password (the page reads it from
  ``api/session``, which another origin cannot read), and an ``Origin`` (when the browser
  sends one) equal to this server's. A cross-site form cannot set the header and a
  cross-site ``fetch`` with it needs a CORS preflight this app never grants. Cookies
  and SameSite play no part: there is no cookie.
- Pages show job data (it is what the dashboard is for) but never a credential; actions
  are recorded in the events stream with the user as ``by`` (the audit page).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from ...errors import JobNotFound
from ...job import JobState
from ...keys import MAX_JOB_ID_LEN, validate_queue_name
from ...manager import QueueManager
from ...metrics import Event
from ...queue import Queue
from ...tasks import stop_task
from ..auth import AuthConfig, AuthFailed, Principal
from ..errors import ApiError, error_response
from ..handlers.jobs import act_on_job
from ..handlers.queues import MAX_GRACE_MS
from ..payload import body_int, duplicate_query_param, json_body, typed_event
from .throttle import LoginThrottle, check_password_strength

logger = logging.getLogger("engine.dashboard")

BASE = "/admin/queues"
PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
AUDIT_SCAN = 1000  # newest events read per queue for the audit page
TIMELINE_SCAN = 2000  # newest events searched for one job's timeline
KEEPALIVE_S = 15.0
MIN_PUSH_INTERVAL_S = 0.2
# Audited events; "schedule" is a schedule's own change (action created, updated, paused,
# resumed, removed), listed when it says who asked.
AUDITED = frozenset(
    {"paused", "resumed", "cleaned", "retried", "removed", "promoted", "cancelled", "manual", "run",
     "schedule"}
)  # fmt: skip
_STATIC = {
    "app.js": "application/javascript",
    "schedules.js": "application/javascript",
    "app.css": "text/css",
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    user: str
    password: str = field(repr=False)
    auth: AuthConfig | None = None  # also accept the API's bearer tokens

    def __post_init__(self) -> None:
        if not self.password:
            raise ValueError("the dashboard needs ENGINE_ADMIN_PASSWORD (there is no default)")
        if not self.user or ":" in self.user:
            raise ValueError("ENGINE_ADMIN_USER must be non-empty and contain no ':'")
        check_password_strength(self.password, self.user)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], auth: AuthConfig | None = None
    ) -> DashboardConfig | None:
        """From ``ENGINE_ADMIN_PASSWORD`` / ``ENGINE_ADMIN_USER``; None without a password
        (the dashboard is then not served). ``ValueError`` for a weak password."""
        password = env.get("ENGINE_ADMIN_PASSWORD") or ""
        if not password:
            return None
        return cls(env.get("ENGINE_ADMIN_USER") or "admin", password, auth)

    @property
    def csrf_key(self) -> bytes:
        # Derived from the password: identical on every instance behind a load balancer,
        # and rotated with the password.
        return hashlib.sha256(b"engine-dashboard-csrf\x00" + self.password.encode()).digest()

    def csrf_token(self, subject: str) -> str:
        return hmac.new(self.csrf_key, subject.encode(), hashlib.sha256).hexdigest()


class LiveHub:
    """Pushes queue counts to every open dashboard: one stats read per burst of events
    (at most every ``MIN_PUSH_INTERVAL_S``), whatever the number of viewers."""

    def __init__(self, manager: QueueManager) -> None:
        self.manager = manager
        self.clients: set[asyncio.Queue[bytes | None]] = set()
        self._dirty = asyncio.Event()
        self._recent: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    def observe(self, events: Sequence[Event]) -> None:
        for ev in events[-20:]:
            self._recent.append(
                {"queue": ev.queue, "event": ev.kind, "jobId": ev.fields.get("jobId"),
                 "ts": ev.ts_ms, "by": ev.fields.get("by")}
            )  # fmt: skip
        del self._recent[:-20]
        if self.clients:
            self._dirty.set()

    async def snapshot(self, with_events: bool = True) -> bytes:
        """Counts of every queue, plus (for a broadcast) the events since the last one."""
        events: list[dict[str, Any]] = []
        if with_events:
            events, self._recent = self._recent, []
        body = {"queues": await overview(self.manager), "events": events}
        return b"event: counts\ndata: " + orjson.dumps(body) + b"\n\n"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="engine-dashboard-hub")

    async def stop(self) -> None:
        for client in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                client.put_nowait(None)
        await stop_task(self._task)

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                message = await self.snapshot()
            except (RedisError, OSError):
                message = b'event: redis\ndata: {"ok": false}\n\n'
            for client in list(self.clients):
                if client.full():  # a slow viewer: drop its oldest; snapshots are complete
                    client.get_nowait()
                client.put_nowait(message)
            await asyncio.sleep(MIN_PUSH_INTERVAL_S)  # rate limit, not synchronisation


CONFIG = web.AppKey("dashboard_config", DashboardConfig)
MANAGER = web.AppKey("dashboard_manager", QueueManager)
HUB = web.AppKey("dashboard_hub", LiveHub)
RUNNERS = web.AppKey[Mapping[str, Any]]("dashboard_run_targets")
THROTTLE = web.AppKey("dashboard_login_throttle", LoginThrottle)
PRINCIPAL = web.RequestKey("dashboard_principal", Principal)


# -- authentication and CSRF --------------------------------------------------------------


def _challenge() -> web.Response:
    return web.Response(
        status=401,
        text="authentication required\n",
        headers={"WWW-Authenticate": 'Basic realm="engine dashboard", charset="UTF-8"'},
    )


def _attempted_user(request: web.Request) -> str:
    """Who a failed login claimed to be, safe to log: the basic-auth user name (truncated,
    quoted, never the password), or the kind of credential."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return f"({scheme.lower()[:20] or 'no'} credentials)"
    try:
        user = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return "(malformed basic credentials)"
    return repr(user[:64])


def authenticate(request: web.Request) -> Principal | None:
    cfg = request.app[CONFIG]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        # Both compares always run: the time taken does not say which part was wrong.
        user_ok = hmac.compare_digest(user.encode(), cfg.user.encode())
        password_ok = hmac.compare_digest(password.encode(), cfg.password.encode())
        if sep and user_ok and password_ok:
            return Principal(subject=cfg.user, roles=frozenset({"admin"}))
        return None
    if scheme.lower() == "bearer" and cfg.auth is not None:
        try:
            return cfg.auth.verify(value.strip())
        except AuthFailed:
            return None
    return None


def _same_origin(request: web.Request) -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser, or a same-origin GET-like request: the token decides
    return origin == f"{request.scheme}://{request.host}"


def _reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )  # fmt: skip


def _error(
    status: int, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    return error_response(status, message, field, {"Cache-Control": "no-store", **(headers or {})})


def protected(handler: Any) -> Any:
    """Wrap a dashboard handler with authentication, CSRF checks and security headers."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        return await _guarded(request, handler)

    return wrapped


async def _guarded(request: web.Request, handler: Any) -> web.StreamResponse:
    throttle = request.app[THROTTLE]
    address = request.remote or "?"
    wait = throttle.retry_after(address)
    if wait > 0:  # locked out: no credential is checked, however many arrive at once
        seconds = str(math.ceil(wait))
        message = f"too many failed logins; retry in {seconds} s"
        return _error(429, message, headers={"Retry-After": seconds})
    principal = authenticate(request)
    if principal is None:
        if "Authorization" in request.headers:  # a browser's first, bare request is not one
            failures = throttle.failed(address)
            logger.warning(
                "Dashboard login failed for %s from %s (%d in a row)",
                _attempted_user(request),
                address,
                failures,
            )
        return _challenge()
    throttle.succeeded(address)
    request[PRINCIPAL] = principal
    try:
        response = await _checked(request, handler, principal)
    except ApiError as exc:  # the message and the field reach the page
        response = _error(exc.status, exc.message, exc.field)
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def _checked(request: web.Request, handler: Any, principal: Principal) -> web.StreamResponse:
    twice = duplicate_query_param(request)
    if twice is not None:
        raise ApiError(400, f"query parameter {twice!r} given more than once", field=twice)
    if request.method not in ("GET", "HEAD"):
        if not principal.is_admin:
            raise ApiError(403, "admin role required")
        token = request.headers.get("X-CSRF-Token", "")
        expected = request.app[CONFIG].csrf_token(principal.subject)
        if not _same_origin(request) or not hmac.compare_digest(token, expected):
            logger.warning("Dashboard: cross-site or tokenless %s refused", request.method)
            raise ApiError(403, "cross-site request refused (missing or wrong CSRF token)")
    response: web.StreamResponse = await handler(request)
    return response


# -- reads --------------------------------------------------------------------------------


async def overview(manager: QueueManager) -> list[dict[str, Any]]:
    """Counts, pause flag and schedule count of every queue, in one round trip."""
    queues = list(manager.queues.values())
    if not queues:
        return []
    async with manager.client.pipeline(transaction=False) as pipe:
        for q in queues:
            q._queue_stats(pipe)
            pipe.zcard(q.keys.schedules)
        results = await pipe.execute()
    out = []
    for i, q in enumerate(queues):
        chunk = results[i * 7 : (i + 1) * 7]
        stats = q._stats_from(chunk[:6]).to_dict()
        out.append({**stats, "isPaused": bool(chunk[5]), "schedules": int(chunk[6])})
    return out


def _queue(request: web.Request) -> Queue:
    name = request.match_info["name"]
    try:
        validate_queue_name(name)
        return request.app[MANAGER].get_queue(name)
    except (ValueError, LookupError):
        raise ApiError(404, "queue not found") from None


def _job_id(request: web.Request) -> str:
    job_id = request.match_info["job_id"]
    if not job_id or len(job_id) > MAX_JOB_ID_LEN or any(c in job_id for c in "{}\x00"):
        raise ApiError(400, "invalid job id", field="job_id")
    return job_id


def _int_query(request: web.Request, name: str, default: int, hi: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise ApiError(400, f"{name} must be a non-negative integer", field=name)
    return min(int(raw), hi)


async def index(request: web.Request) -> web.StreamResponse:
    html = resources.files(__package__).joinpath("static/index.html").read_bytes()
    return web.Response(body=html, content_type="text/html", charset="utf-8")


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    content_type = _STATIC.get(name)
    if content_type is None:
        raise ApiError(404, "not found")
    body = resources.files(__package__).joinpath(f"static/{name}").read_bytes()
    return web.Response(body=body, content_type=content_type, charset="utf-8")


async def session(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    return _reply(
        {
            "user": principal.subject,
            "admin": principal.is_admin,
            "csrf": request.app[CONFIG].csrf_token(principal.subject),
        }
    )


async def queues(request: web.Request) -> web.Response:
    return _reply({"queues": await overview(request.app[MANAGER])})


async def jobs(request: web.Request) -> web.Response:
    queue = _queue(request)
    try:
        state = JobState(request.query.get("state", "waiting"))
    except ValueError:
        allowed = ", ".join(s.value for s in JobState)
        raise ApiError(400, f"state must be one of {allowed}", field="state") from None
    size = max(1, _int_query(request, "size", PAGE_SIZE, MAX_PAGE_SIZE))
    page = _int_query(request, "page", 0, 10**6)
    start = page * size
    listed = await queue.get_jobs(state, start, start + size - 1)
    stats = await queue.get_stats()  # O(1), and the same numbers as the queues page
    total = stats.waiting + stats.paused if state is JobState.WAITING else getattr(stats, state)
    return _reply(
        {
            "queue": queue.name,
            "state": state.value,
            "page": page,
            "size": size,
            "total": total,
            "jobs": [
                {
                    "id": j.id,
                    "name": j.name,
                    "attemptsMade": j.attempts_made,
                    "progress": j.progress,
                    "timestamp": j.timestamp,
                    "processedOn": j.processed_on,
                    "finishedOn": j.finished_on,
                    "failedReason": j.failed_reason,
                }
                for j in listed
            ],
        }
    )


async def job(request: web.Request) -> web.Response:
    queue, job_id = _queue(request), _job_id(request)
    found = await queue.get_job(job_id)
    if found is None:
        raise ApiError(404, "job not found")
    logs = await queue.get_job_logs(job_id)
    entries = await queue.store.client.xrevrange(queue.keys.events, count=TIMELINE_SCAN)
    timeline = [
        typed_event({"ts": eid.split("-")[0], **fields})
        for eid, fields in reversed(entries)
        if fields.get("jobId") == job_id
    ]
    return _reply({"job": found.to_json(), "logs": logs, "timeline": timeline})


async def audit(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    limit = max(1, _int_query(request, "limit", 200, AUDIT_SCAN))
    queues = list(manager.queues.values())
    rows: list[dict[str, Any]] = []
    if queues:
        async with manager.client.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.xrevrange(q.keys.events, count=AUDIT_SCAN)
            streams = await pipe.execute()
        for q, entries in zip(queues, streams, strict=True):
            for eid, fields in entries:
                if fields.get("event") in AUDITED and fields.get("by"):
                    row = {"id": eid, "ts": eid.split("-")[0], "queue": q.name, **fields}
                    rows.append(typed_event(row))
    rows.sort(key=lambda r: r["ts"], reverse=True)
    return _reply({"entries": rows[:limit]})


async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a full snapshot of the counts on connect and after each burst of
    events, so a reconnecting viewer never misses a state."""
    hub = request.app[HUB]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    client: asyncio.Queue[bytes | None] = asyncio.Queue(8)
    hub.clients.add(client)
    try:
        # The first snapshot carries counts only: pending events arrive with the next push.
        await response.write(b"retry: 2000\n\n" + await hub.snapshot(with_events=False))
        while True:
            try:
                message = await asyncio.wait_for(client.get(), KEEPALIVE_S)
            except TimeoutError:
                message = b": keep-alive\n\n"
            if message is None:
                break
            await response.write(message)
    except (ConnectionResetError, RedisError, OSError):
        pass
    finally:
        hub.clients.discard(client)
    return response


# -- actions --------------------------------------------------------------------------------


def _actor(request: web.Request) -> str:
    return request[PRINCIPAL].subject


async def pause(request: web.Request) -> web.Response:
    queue = _queue(request)
    await json_body(request, frozenset())
    await queue.pause(_actor(request))
    return _reply({"success": True, "queue": queue.name, "paused": True})


async def resume(request: web.Request) -> web.Response:
    queue = _queue(request)
    await json_body(request, frozenset())
    await queue.resume(_actor(request))
    return _reply({"success": True, "queue": queue.name, "paused": False})


async def clean(request: web.Request) -> web.Response:
    queue = _queue(request)
    state = request.match_info["state"]
    if state not in ("completed", "failed"):
        raise ApiError(404, "only completed or failed jobs can be cleaned")
    body = await json_body(request, frozenset({"graceMs"}))
    grace = body_int(body, "graceMs", 0, MAX_GRACE_MS)
    removed = await queue.clean(state, grace, _actor(request))
    return _reply({"success": True, "queue": queue.name, "removed": removed})


async def job_action(request: web.Request) -> web.Response:
    queue, job_id = _queue(request), _job_id(request)
    action = request.match_info["action"]
    if action not in ("retry", "promote", "remove", "cancel"):
        raise ApiError(404, "unknown action")
    await json_body(request, frozenset())
    try:
        await act_on_job(queue, job_id, action, _actor(request))
    except JobNotFound:
        return _error(404, "job not found")
    return _reply({"success": True, "queue": queue.name, "jobId": job_id, "action": action})


# -- wiring ---------------------------------------------------------------------------------


def routes() -> list[tuple[str, str, Any, str]]:
    """(method, path under the base, handler, route name); the schedules page's are in
    :mod:`.schedules`."""
    return [
        ("GET", "", index, "dashboard_index"),
        ("GET", "/", index, "dashboard_index_slash"),
        ("GET", "/static/{file}", static, "dashboard_static"),
        ("GET", "/api/session", session, "dashboard_session"),
        ("GET", "/api/queues", queues, "dashboard_queues"),
        ("GET", "/api/queues/{name}/jobs", jobs, "dashboard_jobs"),
        ("GET", "/api/queues/{name}/jobs/{job_id}", job, "dashboard_job"),
        ("GET", "/api/audit", audit, "dashboard_audit"),
        ("GET", "/api/live", live, "dashboard_live"),
        ("POST", "/api/queues/{name}/pause", pause, "dashboard_pause"),
        ("POST", "/api/queues/{name}/resume", resume, "dashboard_resume"),
        ("POST", "/api/queues/{name}/clean/{state}", clean, "dashboard_clean"),
        ("POST", "/api/queues/{name}/jobs/{job_id}/{action}", job_action, "dashboard_job_action"),
    ]


def hub_context(hub: LiveHub) -> Any:
    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        hub.start()
        yield
        await hub.stop()

    return ctx

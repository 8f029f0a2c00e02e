"""The OpenAPI 3.1 document, built from the routes table (a test keeps the two equal)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..consistency import MAX_SAMPLE
from ..job import LISTED_STATES, JobState
from ..queue import MAX_PAGE
from .guard import ADMIN, PUBLIC
from .payload import NUMERIC_EVENT_FIELDS
from .routes import ROUTES, Route
from .schedule_body import NAME_PATTERN, SCHEDULE_BODY

_TS = {"type": "string", "format": "date-time", "example": "2025-11-17T23:45:00.000Z"}
_INT = {"type": "integer", "minimum": 0}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": NAME_PATTERN},
    "example": "serpram-sync",
}
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[^{}/\x00]+$"},
    "example": "1",
}


def _obj(props: dict[str, Any], required: Iterable[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props if required is None else required),
    }


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "1-255 visible ASCII characters, e.g. a UUID per intended run",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}
_SCHEDULE_QUEUE = {
    "name": "queue",
    "in": "query",
    "required": False,
    "description": "the schedule's queue, when the name exists in several",
    "schema": _NAME["schema"],
}


def _ok(props: dict[str, Any]) -> dict[str, Any]:
    return _obj({"success": {"const": True}, **props, "timestamp": _TS})


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_FINDING = _obj({"count": _INT, "sample": {"type": "array", "items": {"type": "string"}}})

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
    "schemas": {
        "ConsistencyReport": _obj(
            {
                "queue": {"type": "string"},
                "ok": {"type": "boolean"},
                "jobs": _INT,
                "states": {"type": "object", "additionalProperties": _INT},
                **{name: _FINDING for name in ("orphaned", "multiple", "missingHash")},
                "unverified": _INT,
            }
        ),
        "QueueStats": _obj(
            {
                "name": {"type": "string"},
                **{
                    k: _INT
                    for k in ("waiting", "active", "completed", "failed", "delayed", "paused")
                },
                "total": _INT,
            }
        ),
        "Job": _obj(
            {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "data": {},
                "opts": {"type": "object"},
                "progress": {},
                "attemptsMade": _INT,
                "stalledCount": _INT,
                "failedReason": {"type": ["string", "null"]},
                "stacktrace": {"type": "array", "items": {"type": "string"}},
                "returnvalue": {},
                "timestamp": _INT,
                "processedOn": {"type": ["integer", "null"]},
                "finishedOn": {"type": ["integer", "null"]},
                "state": {"enum": [*(s.value for s in JobState), None]},
            }
        ),
        "Error": _obj(
            {
                "success": {"const": False},
                "error": {"type": "string"},
                "field": {"type": "string"},
                "timestamp": _TS,
            },
            required=["success", "error", "timestamp"],
        ),
        "Health": _obj(
            {
                "status": {"enum": ["healthy", "degraded", "unhealthy"]},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": _ref("QueueStats")},
                "issues": {
                    "type": "array",
                    "items": _obj(
                        {
                            "queue": {"type": ["string", "null"]},
                            "reason": {
                                "enum": ["failures", "backlog", "no_leader", "redis_unavailable"]
                            },
                            "count": _INT,
                        },
                        required=["queue", "reason"],
                    ),
                },
                "timestamp": _TS,
            }
        ),
        "Message": _ok({"message": {"type": "string"}, "queue": {"type": "string"}}),
        "Schedule": {
            "type": "object",
            "description": "a declared schedule, its next fire time and state",
        },
    },
}

_ERRORS = {
    "400": "bad parameter or body (the `field` names it)",
    "401": "missing or invalid bearer token",
    "403": "the token lacks the admin role",
    "404": "unknown queue, job or scheduler",
    "409": "the job is not in a state that allows this; a schedule declared in engine.toml",
    "413": "request body too large",
    "503": "Redis unavailable",
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(props: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": props, "additionalProperties": False}
    return {"required": False, "content": {"application/json": {"schema": schema}}}


_MSG = _ref("Message")
_JOB_MSG = _ok(
    {"message": {"type": "string"}, "queue": {"type": "string"}, "jobId": {"type": "string"}}
)
_PAUSE = _ok(
    {
        "message": {"type": "string"},
        "queue": {"type": "string"},
        "paused": {"type": "boolean"},
        "changed": {"type": "boolean"},
    }
)
_CLEAN = _ok(
    {
        "message": {"type": "string"},
        "queue": {"type": "string"},
        "state": {"enum": ["completed", "failed"]},
        "gracePeriod": _INT,
        "removed": _INT,
    }
)
_GRACE = {"gracePeriod": {**_INT, "maximum": 10 * 365 * 24 * 3600 * 1000, "default": 3_600_000}}

# name -> (summary, parameters, request body, success schema)
OPERATIONS: dict[str, tuple[str, list[dict[str, Any]], dict[str, Any] | None, dict[str, Any]]] = {
    "health": ("Health of every queue (no auth)", [], None, _ref("Health")),
    "all_stats": (
        "Stats of every queue",
        [],
        None,
        _ok({"queues": {"type": "object", "additionalProperties": _ref("QueueStats")}}),
    ),
    "queue_stats": ("Stats of one queue", [_NAME], None, _ok({"stats": _ref("QueueStats")})),
    "list_jobs": (
        "Jobs of a queue in one state, by index range (inclusive)",
        [
            _NAME,
            {
                "name": "state",
                "in": "query",
                "schema": {"enum": [s.value for s in LISTED_STATES], "default": "waiting"},
            },
            {"name": "start", "in": "query", "schema": {**_INT, "maximum": 10**9, "default": 0}},
            {
                "name": "end",
                "in": "query",
                "description": f"inclusive (default start + 9); at most {MAX_PAGE} jobs per "
                f"page: a wider range stops at start + {MAX_PAGE - 1} (the reply's `end` says "
                "where), a range ending before start is empty",
                "schema": {**_INT, "maximum": 10**9},
            },
        ],
        None,
        _ok(
            {
                "queue": {"type": "string"},
                "state": {"enum": [s.value for s in LISTED_STATES]},
                "start": _INT,
                "end": _INT,
                "count": _INT,
                "jobs": {"type": "array", "items": _ref("Job")},
            }
        ),
    ),
    "get_job": ("One job by id", [_NAME, _JOB_ID], None, _ok({"job": _ref("Job")})),
    "retry_job": ("Move a failed job back to waiting", [_NAME, _JOB_ID], _body({}), _JOB_MSG),
    "promote_job": ("Move a delayed job to waiting now", [_NAME, _JOB_ID], _body({}), _JOB_MSG),
    "remove_job": ("Delete a job that is not active", [_NAME, _JOB_ID], None, _JOB_MSG),
    "cancel_job": (
        "Cancel a waiting, delayed or active job: it fails at once, never retried (reason "
        "'cancelled by <sub>'); an active job's handler is stopped on the instance running "
        "it. 409 names the state of a finished job",
        [_NAME, _JOB_ID],
        _body({}),
        _ok(
            {
                "message": {"type": "string"},
                "queue": {"type": "string"},
                "jobId": {"type": "string"},
                "state": {"const": "failed"},
                "was": {"enum": ["waiting", "delayed", "active"]},
            }
        ),
    ),
    "events": (
        "Recent lifecycle and audit events of a queue, newest first",
        [
            _NAME,
            {
                "name": "count",
                "in": "query",
                "schema": {**_INT, "minimum": 1, "maximum": MAX_PAGE, "default": 100},
            },
        ],
        None,
        _ok(
            {
                "queue": {"type": "string"},
                "events": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "event": {"type": "string"},
                            **{name: {"type": "integer"} for name in sorted(NUMERIC_EVENT_FIELDS)},
                        },
                        "required": ["id", "ts", "event"],
                        "additionalProperties": {"type": "string"},
                    },
                },
            }
        ),
    ),
    "consistency": (
        "Consistency check: every job in exactly one state, every listed id with a job "
        "(reads the whole queue, in chunks; a big queue may need the CLI's `check`)",
        [
            _NAME,
            {
                "name": "sample",
                "in": "query",
                "description": "ids listed per finding, at most",
                "schema": {**_INT, "maximum": MAX_SAMPLE, "default": 20},
            },
        ],
        None,
        _ok({"report": _ref("ConsistencyReport")}),
    ),
    "pause": ("Pause a queue on every instance", [_NAME], _body({}), _PAUSE),
    "resume": ("Resume a queue on every instance", [_NAME], _body({}), _PAUSE),
    "clean_completed": (
        "Remove completed jobs older than gracePeriod ms",
        [_NAME],
        _body(_GRACE),
        _CLEAN,
    ),
    "clean_failed": (
        "Remove failed jobs older than gracePeriod ms",
        [_NAME],
        _body(_GRACE),
        _CLEAN,
    ),
    "run_now": (
        "Run a declared scheduler now (e.g. serpram, ayt); with Idempotency-Key, a retry with "
        "the same key (within 24 h) returns the first job instead of enqueuing another",
        [
            {**_NAME, "description": "scheduler name, e.g. serpram or ayt", "example": "serpram"},
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "1-255 visible ASCII characters, e.g. a UUID per intended run",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": "^[!-~]+$",
                },
            },
        ],
        _body({}),
        _JOB_MSG,
    ),
    "schedules": (
        "Every schedule (declared in engine.toml, then the operators') with next fire times "
        "and state",
        [],
        None,
        _ok({"schedules": {"type": "array", "items": _ref("Schedule")}}),
    ),
    "put_schedule": (
        "Create or change an operator's schedule of a served queue (idempotent: the same "
        "body again is 'unchanged'); a schedule declared in engine.toml answers 409. 400 "
        "names the field, also for what the schema cannot say (a cron expression out of "
        "range, end before start)",
        [_NAME],
        {"required": True, "content": {"application/json": {"schema": SCHEDULE_BODY}}},
        _ok(
            {
                "action": {"enum": ["created", "updated", "unchanged"]},
                "schedule": _ref("Schedule"),
                "nextFires": {"type": "array", "items": _INT},
            }
        ),
    ),
    "delete_schedule": (
        "Delete an operator's schedule and its ledger (a declared one answers 409)",
        [_NAME, _SCHEDULE_QUEUE],
        None,
        _ok(
            {
                "message": {"type": "string"},
                "queue": {"type": "string"},
                "schedule": {"type": "string"},
            }
        ),
    ),
    "pause_schedule": (
        "Pause one schedule (its queue keeps running)",
        [_NAME, _SCHEDULE_QUEUE],
        _body({}),
        _ok({"changed": {"type": "boolean"}, "schedule": _ref("Schedule")}),
    ),
    "resume_schedule": (
        "Resume one schedule (next fire from now, no catch-up)",
        [_NAME, _SCHEDULE_QUEUE],
        _body({}),
        _ok({"changed": {"type": "boolean"}, "schedule": _ref("Schedule")}),
    ),
    "run_schedule": (
        "Run one schedule now (Idempotency-Key: a retry returns the first job)",
        [_NAME, _SCHEDULE_QUEUE, _IDEMPOTENCY_KEY],
        _body({}),
        _JOB_MSG,
    ),
    "openapi": ("This document (no auth)", [], None, {"type": "object"}),
}


def _operation(route: Route) -> dict[str, Any]:
    summary, params, body, schema = OPERATIONS[route.name]
    responses: dict[str, Any] = {"200": _json(schema)}
    error = _json(_ref("Error"))
    for code, text in _ERRORS.items():
        if route.access == PUBLIC and code in ("401", "403"):
            continue
        if route.access != ADMIN and code in ("403", "409"):
            continue
        responses[code] = {**error, "description": text}
    if route.name == "health":
        responses = {"200": _json(schema), "503": _json(schema, "Redis unavailable (unhealthy)")}
    op: dict[str, Any] = {"operationId": route.name, "summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    if route.access == PUBLIC:
        op["security"] = []
    else:
        op["x-required-role"] = "admin" if route.access == ADMIN else "any"
    return op


def build_openapi(routes: Iterable[Route] = ROUTES) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "engine API",
            "version": "1.0.0",
            "description": "Distributed job and cron scheduler: queues, jobs and schedulers.",
        },
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": COMPONENTS,
    }


def query_params(doc: dict[str, Any]) -> dict[str, frozenset[str]]:
    """Operation id -> the query parameters the document declares for it."""
    out: dict[str, frozenset[str]] = {}
    for ops in doc["paths"].values():
        for op in ops.values():
            names = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
            out[op["operationId"]] = frozenset(names)
    return out

"""The one routes table: method, path, handler, name and who may call it."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Handler
from .guard import ADMIN, PUBLIC, READ
from .handlers import consistency, docs, health, jobs, queues, runs, schedules


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    name: str
    access: str


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/queues/health", health.health, "health", PUBLIC),
    Route("GET", "/api/queues/stats", queues.all_stats, "all_stats", READ),
    Route("GET", "/api/queues/{name}/stats", queues.queue_stats, "queue_stats", READ),
    Route("GET", "/api/queues/{name}/jobs", queues.list_jobs, "list_jobs", READ),
    Route("GET", "/api/queues/{name}/jobs/{job_id}", jobs.get_job, "get_job", READ),
    Route("POST", "/api/queues/{name}/jobs/{job_id}/retry", jobs.retry_job, "retry_job", ADMIN),
    Route(
        "POST", "/api/queues/{name}/jobs/{job_id}/promote", jobs.promote_job, "promote_job", ADMIN
    ),
    Route("DELETE", "/api/queues/{name}/jobs/{job_id}", jobs.remove_job, "remove_job", ADMIN),
    Route("POST", "/api/queues/{name}/jobs/{job_id}/cancel", jobs.cancel_job, "cancel_job", ADMIN),
    Route("GET", "/api/queues/{name}/events", queues.events, "events", READ),
    Route("GET", "/api/queues/{name}/consistency", consistency.check, "consistency", ADMIN),
    Route("POST", "/api/queues/{name}/pause", queues.pause, "pause", ADMIN),
    Route("POST", "/api/queues/{name}/resume", queues.resume, "resume", ADMIN),
    Route(
        "POST",
        "/api/queues/{name}/clean/completed",
        queues.clean_completed,
        "clean_completed",
        ADMIN,
    ),
    Route("POST", "/api/queues/{name}/clean/failed", queues.clean_failed, "clean_failed", ADMIN),
    Route("POST", "/api/queues/{name}/run", runs.run_now, "run_now", ADMIN),
    Route("GET", "/api/schedules", schedules.list_schedules, "schedules", READ),
    Route("PUT", "/api/schedules/{name}", schedules.put_schedule, "put_schedule", ADMIN),
    Route("DELETE", "/api/schedules/{name}", schedules.delete_schedule, "delete_schedule", ADMIN),
    Route("POST", "/api/schedules/{name}/pause", schedules.pause_schedule, "pause_schedule", ADMIN),
    Route(
        "POST",
        "/api/schedules/{name}/resume",
        schedules.resume_schedule,
        "resume_schedule",
        ADMIN,
    ),
    Route("POST", "/api/schedules/{name}/run", schedules.run_schedule, "run_schedule", ADMIN),
    Route("GET", "/api/openapi.json", docs.openapi, "openapi", PUBLIC),
)

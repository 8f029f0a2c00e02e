"""A Redis-native distributed job and cron scheduler engine for asyncio services."""

from .connection import RedisSettings
from .errors import (
    EngineError,
    InvalidJobState,
    JobNotFound,
    LeaseLost,
    QueueNotFound,
    RedisUnavailable,
    ScheduleNotFound,
    UnrecoverableError,
)
from .job import Job, JobState
from .lock import LeaderLease, LeaseConfig
from .manager import QueueManager
from .options import Backoff, JobOptions, Retention
from .queue import BulkJob, Queue, QueueStats
from .scheduler import (
    ScheduleDefinition,
    Scheduler,
    ScheduleState,
    define_schedule,
    get_schedule_state,
    run_schedule_now,
    upsert_schedule,
)
from .worker import RateLimit, Worker, WorkerOptions

__all__ = [
    "Backoff",
    "BulkJob",
    "EngineError",
    "InvalidJobState",
    "Job",
    "JobNotFound",
    "JobOptions",
    "JobState",
    "LeaderLease",
    "LeaseConfig",
    "LeaseLost",
    "Queue",
    "QueueManager",
    "QueueNotFound",
    "QueueStats",
    "RateLimit",
    "RedisSettings",
    "RedisUnavailable",
    "Retention",
    "ScheduleDefinition",
    "ScheduleNotFound",
    "ScheduleState",
    "Scheduler",
    "UnrecoverableError",
    "Worker",
    "WorkerOptions",
    "define_schedule",
    "get_schedule_state",
    "run_schedule_now",
    "upsert_schedule",
]

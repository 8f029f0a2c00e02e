"""A Redis-native distributed job and cron scheduler engine for asyncio services."""

from .alerts import AlertConfig, AlertManager, WebhookConfig
from .connection import RedisSettings
from .errors import (
    EngineError,
    InvalidJobState,
    JobFailed,
    JobNotCancellable,
    JobNotFound,
    LeaseLost,
    QueueNotFound,
    ReplicationTimeout,
    ScheduleNotFound,
    StartupCheckError,
    UnrecoverableError,
    WaitTimeout,
)
from .events import EventFeed
from .job import Job, JobState
from .lock import LeaderLease, LeaseConfig
from .manager import QueueManager
from .metrics import EngineMetrics
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
    "AlertConfig",
    "AlertManager",
    "Backoff",
    "BulkJob",
    "EngineError",
    "EngineMetrics",
    "EventFeed",
    "InvalidJobState",
    "Job",
    "JobFailed",
    "JobNotCancellable",
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
    "ReplicationTimeout",
    "Retention",
    "ScheduleDefinition",
    "ScheduleNotFound",
    "ScheduleState",
    "Scheduler",
    "StartupCheckError",
    "UnrecoverableError",
    "WaitTimeout",
    "WebhookConfig",
    "Worker",
    "WorkerOptions",
    "define_schedule",
    "get_schedule_state",
    "run_schedule_now",
    "upsert_schedule",
]

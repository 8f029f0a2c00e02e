"""A Redis-native distributed job and cron scheduler engine for asyncio services."""

from .connection import RedisSettings
from .errors import (
    EngineError,
    InvalidJobState,
    JobNotFound,
    LeaseLost,
    QueueNotFound,
    RedisUnavailable,
    UnrecoverableError,
)
from .job import Job, JobState
from .manager import QueueManager
from .options import Backoff, JobOptions, Retention
from .queue import BulkJob, Queue, QueueStats
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
    "LeaseLost",
    "Queue",
    "QueueManager",
    "QueueNotFound",
    "QueueStats",
    "RateLimit",
    "RedisSettings",
    "RedisUnavailable",
    "Retention",
    "UnrecoverableError",
    "Worker",
    "WorkerOptions",
]

"""The worker package: :class:`Worker` and its options (see ``core.py`` for its rooms)."""

from ..errors import LeaseLost
from .core import Worker
from .options import BackoffStrategy, RateLimit, WorkerOptions

__all__ = ["BackoffStrategy", "LeaseLost", "RateLimit", "Worker", "WorkerOptions"]

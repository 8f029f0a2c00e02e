"""Every Redis key name the engine uses, built in exactly one place.

All keys of one queue share the hash tag ``{<queue>}`` so that every Lua script touches
a single slot and the engine runs unchanged on Redis Cluster.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import secrets
from dataclasses import dataclass

# Queue names become part of key names and URLs: keep them to a safe alphabet so a
# hostile name can neither break the hash tag (``{``/``}``) nor the key layout (``:``).
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.\-]{1,50}$")
MAX_JOB_ID_LEN = 200


def validate_queue_name(name: str) -> str:
    """Return ``name`` if it is a valid queue name, else raise ``ValueError`` naming it."""
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):  # `$` alone allows "q\n"
        raise ValueError(
            f"queue name {name!r} is invalid: use 1-100 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid key prefix, else raise ``ValueError``."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ValueError(f"prefix {prefix!r} is invalid: use 1-50 letters, digits, '_', '-', '.'")
    return prefix


def validate_job_id(job_id: str) -> str:
    """Return ``job_id`` if usable as a fixed job id, else raise ``ValueError``."""
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_JOB_ID_LEN:
        raise ValueError(f"job_id must be a non-empty string of at most {MAX_JOB_ID_LEN} chars")
    if any(ch in job_id for ch in "{}\x00") or job_id.isdigit():
        # Digits-only ids are reserved for the queue's own counter, so a fixed id can
        # never collide with a generated one.
        raise ValueError(
            f"job_id {job_id!r} is invalid: it may not be all digits nor contain '{{', '}}' or NUL"
        )
    return job_id


def validate_dedup_id(dedup_id: str) -> str:
    """Return ``dedup_id`` if usable as a deduplication id, else raise ``ValueError``.

    The rules of job ids, except that all digits are allowed (an order number is a natural
    id): a dedup key has a namespace of its own, so it cannot meet the queue's counter."""
    if not isinstance(dedup_id, str) or not dedup_id or len(dedup_id) > MAX_JOB_ID_LEN:
        raise ValueError(
            f"deduplication.id must be a non-empty string of at most {MAX_JOB_ID_LEN} chars"
        )
    if any(ch in dedup_id for ch in "{}\x00"):
        raise ValueError(
            f"deduplication.id {dedup_id!r} is invalid: it may not contain '{{', '}}' or NUL"
        )
    return dedup_id


def _schedule_segment(name: str) -> str:
    # `schedule:<name>` and `schedule:<name>:ledger` share a namespace: a name holding ':'
    # (say `x:ledger`) would address another schedule's ledger. Schedule names are
    # validated to the queue-name alphabet (no ':') where they are declared; refuse here too
    # so no reader (a URL, a stored name) can reach a key it does not mean.
    if ":" in name:
        raise ValueError(f"schedule name {name!r} is invalid: it may not contain ':'")
    return name


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Key names of one queue: ``<prefix>:{<queue>}:<part>``."""

    prefix: str
    queue: str

    @property
    def base(self) -> str:
        """The common start of every key of this queue (ends with ``:``)."""
        return f"{self.prefix}:{{{self.queue}}}:"

    def _k(self, part: str) -> str:
        return self.base + part

    @property
    def wait(self) -> str:
        """List of waiting jobs without priority (FIFO: RPUSH, LPOP; LPUSH to the front)."""
        return self._k("wait")

    @property
    def prioritized(self) -> str:
        """Zset of waiting jobs with a priority: score = priority * 2^32 + sequence.

        Scripts derive it from the ``wait`` key (same hash tag), see ``engine/lua``."""
        return self._k("prioritized")

    @property
    def active(self) -> str:
        return self._k("active")

    @property
    def delayed(self) -> str:
        return self._k("delayed")

    @property
    def completed(self) -> str:
        return self._k("completed")

    @property
    def failed(self) -> str:
        return self._k("failed")

    @property
    def meta(self) -> str:
        return self._k("meta")

    @property
    def marker(self) -> str:
        return self._k("marker")

    @property
    def events(self) -> str:
        return self._k("events")

    @property
    def claims(self) -> str:
        """Zset of claims not yet confirmed by their worker: score = claim deadline (ms).
        A subset of ``active`` (not a state of its own)."""
        return self._k("claims")

    @property
    def limiter(self) -> str:
        return self._k("limiter")

    @property
    def stalled_check(self) -> str:
        """Guard so one instance per interval runs stalled recovery."""
        return self._k("stalled-check")

    @property
    def schedules(self) -> str:
        return self._k("schedules")

    @property
    def schedules_aside(self) -> str:
        """Set of schedule names set aside: their stored definition cannot be read here."""
        return self._k("schedules-aside")

    @property
    def lease(self) -> str:
        return self._k("lease")

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel (not a key) on which ``cancel_job`` announces the cancel of a
        running job to the worker holding it (``engine/worker/cancel.py``)."""
        return self._k("cancel")

    @property
    def job_prefix(self) -> str:
        """Prefix of job hashes; scripts append the id (same slot by construction)."""
        return self._k("job:")

    def request(self, request_id: str) -> str:
        """Reply record of one script call that a client may resend (lua/include/request.lua):
        lives for the store's resend window."""
        return self._k(f"req:{request_id}")

    def job(self, job_id: str) -> str:
        return self._k(f"job:{job_id}")

    @property
    def logs_prefix(self) -> str:
        """Prefix of job log lists. A namespace of its own rather than a suffix of the job
        key (``job:<id>:logs``), which job ids may contain ``:``, so the log list of job
        ``x`` can never be the hash of a job named ``x:logs``."""
        return self._k("logs:")

    def logs(self, job_id: str) -> str:
        return self._k(f"logs:{job_id}")

    def dedup(self, dedup_id: str) -> str:
        """The window of one deduplication id (``deduplication`` job option): holds the id
        of the job that opened it; PX = its ttl, none when it lasts until that job
        finishes. A namespace of its own (no job id can name it); the finishing scripts
        derive it from the job prefix (lua/include/dedup.lua)."""
        return self._k(f"dedup:{dedup_id}")

    def schedule(self, name: str) -> str:
        return self._k(f"schedule:{_schedule_segment(name)}")

    def schedule_ledger(self, name: str) -> str:
        """Capped stream of a schedule's fired and missed ticks (outlives job clean-up)."""
        return self._k(f"schedule:{_schedule_segment(name)}:ledger")

    def idempotency(self, schedule: str, key: str) -> str:
        """The first job of a run-now under an idempotency key (PX: how long it is
        remembered). The caller's key is hashed: any string, a bounded key name."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self._k(f"idem:{schedule}:{digest}")

    def watermark(self, name: str) -> str:
        """A processor-owned key (e.g. the demo sync watermark)."""
        return self._k(f"watermark:{name}")


class _RequestIds:
    """96 random bits drawn once per process (again in a forked child), then a counter:
    unique without coordination, and cheaper per call than drawing random bytes (a
    request id is made for every add)."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._nonce = secrets.token_hex(12)
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._nonce}{next(self._count):x}"


_REQUEST_IDS = _RequestIds()


def new_request_id() -> str:
    """A fresh id for one script call (unique across processes: see ``_RequestIds``)."""
    return _REQUEST_IDS()


def queues_registry(prefix: str) -> str:
    """The set of known queue names (outside any queue's slot; never used in a script)."""
    return f"{prefix}:queues"

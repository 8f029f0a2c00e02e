"""The worker's script calls: the one place their KEYS and ARGV are built.

Every key a script may write is declared (job hashes as the variadic tail of
``-N+`` scripts), so Redis, and a Cluster mid-migration, refuses a call before its first
write. Each call is safe to send twice: the finish, renewal, release and progress calls
by their token check, the claim by its request record (``request_id``, a resend returns
the first copy's jobs), a log line by its per-attempt sequence number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..keys import QueueKeys
from ..store import Store

# Values per job in a complete_job call (id, token, return value, keep count, keep age).
COMPLETE_ARGS = 5


class WorkerCalls:
    """Script calls of one queue's worker, built over one store."""

    def __init__(self, store: Store, keys: QueueKeys) -> None:
        self.store = store
        self.keys = keys
        k = keys
        self._claim_keys = [
            k.meta,
            k.wait,
            k.prioritized,
            k.delayed,
            k.active,
            k.events,
            k.marker,
            k.limiter,
            k.claims,
        ]
        self._fail_keys = [
            k.active,
            k.wait,
            k.prioritized,
            k.delayed,
            k.failed,
            k.meta,
            k.events,
            k.marker,
            k.claims,
        ]

    def claim(
        self,
        *,
        worker_id: str,
        request_id: str,
        count: int,
        claim_ms: int,
        rate: tuple[int, int],
        promote_batch: int,
        client: Any = None,
    ) -> Any:
        """move_to_active: see its header for the reply."""
        k = self.keys
        return self.store.scripts.move_to_active(
            [*self._claim_keys, k.request(request_id)],
            [
                k.job_prefix,
                worker_id,
                count,
                claim_ms,
                self.store.max_events,
                rate[0],
                rate[1],
                promote_batch,
                self.store.resend_window_ms,
            ],
            client=client,
        )

    def complete(
        self, jobs: Sequence[Sequence[str | int]], retention_batch: int, client: Any = None
    ) -> Any:
        """complete_job for ``jobs`` of (id, token, return value JSON, keep, age ms)."""
        k = self.keys
        args: list[str | int] = [k.job_prefix, self.store.max_events, retention_batch]
        hashes = []
        for job in jobs:
            args += job
            hashes.append(k.job(str(job[0])))
        return self.store.scripts.complete_job(
            [k.active, k.completed, k.events, k.claims, *hashes], args, client=client
        )

    def fail(self, args: Sequence[str | int], client: Any = None) -> Any:
        """fail_job with the args built by the runner (job id second)."""
        return self.store.scripts.fail_job(
            [*self._fail_keys, self.keys.job(str(args[1]))], list(args), client=client
        )

    def extend(self, pairs: Sequence[tuple[str, str]], lease_ms: int) -> Any:
        """extend_leases: renew (and confirm) these attempts; returns the lost pairs."""
        k = self.keys
        args: list[str | int] = [lease_ms]
        for job_id, token in pairs:
            args += [job_id, token]
        return self.store.scripts.extend_leases(
            [k.active, k.claims, *(k.job(job_id) for job_id, _ in pairs)], args
        )

    def release(self, pairs: Sequence[tuple[str, str]]) -> Any:
        """release_jobs: hand these attempts back to waiting; returns the ids released."""
        k = self.keys
        args: list[str | int] = [self.store.max_events]
        for job_id, token in pairs:
            args += [job_id, token]
        return self.store.scripts.release_jobs(
            [
                k.active,
                k.wait,
                k.prioritized,
                k.events,
                k.marker,
                k.claims,
                *(k.job(job_id) for job_id, _ in pairs),
            ],
            args,
        )

    def recover(
        self,
        *,
        max_stalled: int,
        batch: int,
        guard_ms: int,
        default_keep_failed: int,
        retention_batch: int,
    ) -> Any:
        """recover_stalled: {stalled ids requeued, ids failed, unconfirmed claims back}."""
        k = self.keys
        return self.store.scripts.recover_stalled(
            [
                k.active,
                k.wait,
                k.prioritized,
                k.failed,
                k.events,
                k.marker,
                k.stalled_check,
                k.claims,
            ],
            [
                k.job_prefix,
                max_stalled,
                batch,
                self.store.max_events,
                guard_ms,
                default_keep_failed,
                retention_batch,
            ],
        )

    def progress(self, job_id: str, token: str, value: str) -> Any:
        k = self.keys
        return self.store.scripts.update_progress(
            [k.active, k.events, k.job(job_id)], [job_id, token, value, self.store.max_events]
        )

    def log(self, job_id: str, token: str, line: str, seq: int) -> Any:
        k = self.keys
        return self.store.scripts.add_log(
            [k.active, k.job(job_id), k.logs(job_id)],
            [job_id, token, line, self.store.max_log_lines, seq],
        )

"""The scheduler leader lease of one queue: a token-checked Redis key plus a fencing epoch.

Time-line of a lost lease, and why each rule exists:

1. ``acquire`` sets the lease (``SET NX PX``) and takes the next epoch in one script.
   Every fire call presents token and epoch and the fire script re-checks both, so a
   leader that was paused (GC, SIGSTOP, a slow network) past its TTL is refused by Redis
   itself when it wakes up: the fence sits in the same script as the write.
2. ``renew`` is a token-checked ``PEXPIRE`` (a bare one could extend a successor's lease,
   celery-redbeat #127), run at most every TTL/3 so one lost renewal never lets it lapse
   (redbeat #129, #230).
3. The holder also stops acting on its own, at ``sent + TTL - margin`` by the local
   monotonic clock, measured from *before* the command was sent: the lease cannot have
   started earlier than that, so the local deadline falls before the server's expiry
   even when Redis is unreachable and renewals cannot tell us anything.
4. Any error while acquiring or renewing means "not leader" (redbeat #208).
5. ``release`` (token-checked ``DEL``) on graceful shutdown hands over at once.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .keys import QueueKeys
from .store import Store

logger = logging.getLogger("engine.lock")


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    """Timing of the leader lease. ``renew_interval_ms`` must be at most a third of the TTL
    and ``margin_ms`` (how early the holder stops acting) below the TTL."""

    ttl_ms: int = 10_000
    renew_interval_ms: int = 3_000
    margin_ms: int = 1_000

    def __post_init__(self) -> None:
        for name in ("ttl_ms", "renew_interval_ms", "margin_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer (ms), got {value!r}")
        if self.ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {self.ttl_ms}")
        if self.renew_interval_ms <= 0 or self.renew_interval_ms * 3 > self.ttl_ms:
            raise ValueError(
                f"renew_interval_ms must be positive and at most ttl_ms / 3 "
                f"({self.ttl_ms // 3}), got {self.renew_interval_ms}"
            )
        if not 0 <= self.margin_ms < self.ttl_ms:
            raise ValueError(
                f"margin_ms must be at least 0 and less than ttl_ms ({self.ttl_ms}), "
                f"got {self.margin_ms}"
            )


def default_instance_id() -> str:
    """``host:pid``: who holds a lease, readable in state and events."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaderLease:
    """Leadership of one queue's scheduler. Call :meth:`acquire` until it returns True,
    then :meth:`renew` every ``renew_interval_ms``; check :attr:`is_leader` (a local,
    monotonic deadline) before acting and present :attr:`token` / :attr:`epoch` to Redis."""

    def __init__(
        self,
        store: Store,
        queue: str,
        config: LeaseConfig | None = None,
        *,
        instance_id: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.keys: QueueKeys = store.keys(queue)
        self.config = config or LeaseConfig()
        self.instance_id = instance_id or default_instance_id()
        self.token = f"{self.instance_id}/{uuid.uuid4().hex[:12]}"
        self.epoch = 0
        self._monotonic = monotonic
        self._valid_until = 0.0  # local monotonic deadline; 0 = not leader
        self.server_now_ms = 0  # Redis TIME seen by the last call
        self.holder_ttl_ms = 0  # when not leader: what remains of the holder's lease

    @property
    def is_leader(self) -> bool:
        return self._monotonic() < self._valid_until

    def remaining_s(self) -> float:
        """Seconds until this holder must stop acting (0 when not leader)."""
        return max(0.0, self._valid_until - self._monotonic())

    def _extend(self, sent_at: float) -> None:
        cfg = self.config
        self._valid_until = sent_at + (cfg.ttl_ms - cfg.margin_ms) / 1000

    def lost(self) -> None:
        """Stop acting now (e.g. a fire call was refused by the fence)."""
        if self._valid_until:
            logger.warning("Leader lease of queue %s lost (epoch %d)", self.keys.queue, self.epoch)
        self._valid_until = 0.0

    async def acquire(self) -> bool:
        """Try to become (or stay) leader. Any error counts as "not leader"."""
        sent_at = self._monotonic()
        try:
            ok, epoch, now_ms, ttl = await self.store.scripts.acquire_lease(
                [self.keys.lease, self.keys.meta, self.keys.events],
                [self.token, self.config.ttl_ms, self.store.max_events],
            )
        except Exception as exc:  # redbeat #208: an error is never success
            logger.warning("Leader lease acquire for queue %s failed: %s", self.keys.queue, exc)
            self._valid_until = 0.0
            return False
        self.server_now_ms = int(now_ms)
        if not int(ok):
            self._valid_until = 0.0
            self.holder_ttl_ms = max(int(ttl), 0)
            return False
        was_leader = self.is_leader
        self.epoch = int(epoch)
        self.holder_ttl_ms = 0
        self._extend(sent_at)
        if not was_leader:
            logger.info(
                "Leader of queue %s: %s (epoch %d)", self.keys.queue, self.instance_id, self.epoch
            )
        return True

    async def renew(self) -> bool:
        """Extend the lease. False (and no longer leader) if it was lost or Redis failed."""
        if not self._valid_until:
            return False
        sent_at = self._monotonic()
        try:
            ok, now_ms = await self.store.scripts.renew_lease(
                [self.keys.lease], [self.token, self.config.ttl_ms]
            )
        except Exception as exc:  # unknown outcome: stop acting, re-acquire
            # The renewal may have been applied; acquire() with the same token re-confirms
            # the lease (same epoch) if nobody else took it meanwhile.
            logger.warning("Leader lease renew for queue %s failed: %s", self.keys.queue, exc)
            self._valid_until = 0.0
            return False
        self.server_now_ms = int(now_ms)
        if not int(ok):
            self.lost()
            return False
        self._extend(sent_at)
        return True

    async def release(self) -> bool:
        """Give the lease up if held (graceful shutdown). Never raises."""
        was = self._valid_until
        self._valid_until = 0.0
        if not was:
            return False
        try:
            released = bool(await self.store.scripts.release_lease([self.keys.lease], [self.token]))
        except Exception as exc:  # it expires by itself anyway
            logger.warning("Leader lease release for queue %s failed: %s", self.keys.queue, exc)
            return False
        if released:
            logger.info(
                "Leader lease of queue %s released by %s", self.keys.queue, self.instance_id
            )
        return released


async def current_leader(store: Store, queue: str) -> tuple[str | None, int]:
    """The instance id holding ``queue``'s lease (None if none) and the current epoch."""
    keys = store.keys(queue)
    async with store.client.pipeline(transaction=False) as pipe:
        pipe.get(keys.lease)
        pipe.hget(keys.meta, "leaderEpoch")
        token, epoch = await pipe.execute()
    holder = token.rsplit("/", 1)[0] if token else None
    return holder, int(epoch or 0)

"""Dashboard login hardening: a minimum password strength, and a per-address lockout that
grows with repeated failures.

A delay on each wrong answer does not slow a client that sends its guesses in parallel,
so after ``free_failures`` failed logins an address is locked out: every request from it
gets a 429 with ``Retry-After`` and no credential is even checked, for ``base_s``
doubling with each further failure up to ``max_s``. A successful login clears the
address; one without failures for ``forget_after_s`` is forgotten. At most
``max_addresses`` are remembered (the least recently seen goes first), so a client
rotating addresses cannot grow memory. Behind a reverse proxy every client shares the
proxy's address: the lockout then protects the password, at the price of locking out
everyone while it lasts.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MIN_PASSWORD_CHARS = 12
MIN_DISTINCT_CHARS = 5


def check_password_strength(password: str, user: str) -> None:
    """``ValueError`` saying what is required when ``password`` is too weak."""
    lowered = password.lower()
    weak = (
        len(password) < MIN_PASSWORD_CHARS
        or len(set(password)) < MIN_DISTINCT_CHARS
        or (user and user.lower() in lowered)
        or "password" in lowered
    )
    if weak:
        raise ValueError(
            f"ENGINE_ADMIN_PASSWORD is too weak: use at least {MIN_PASSWORD_CHARS} characters, "
            f"at least {MIN_DISTINCT_CHARS} of them different, not containing the user name "
            "or 'password'; for example: "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(16))'"
        )


@dataclass(slots=True)
class _Failures:
    count: int
    last: float
    locked_until: float


class LoginThrottle:
    def __init__(
        self,
        *,
        free_failures: int = 5,
        base_s: float = 1.0,
        max_s: float = 60.0,
        forget_after_s: float = 900.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.base_s = base_s
        self.max_s = max_s
        self.forget_after_s = forget_after_s
        self.max_addresses = max_addresses
        self.clock = clock
        self._by_address: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after(self, address: str) -> float:
        """Seconds ``address`` is still locked out for (0: it may try)."""
        entry = self._by_address.get(address)
        if entry is None:
            return 0.0
        now = self.clock()
        if now - entry.last > self.forget_after_s:
            del self._by_address[address]
            return 0.0
        return max(0.0, entry.locked_until - now)

    def failed(self, address: str) -> int:
        """Record a failed login; returns the address's failures in a row."""
        now = self.clock()
        entry = self._by_address.get(address)
        if entry is None or now - entry.last > self.forget_after_s:
            entry = _Failures(0, now, 0.0)
        entry.count += 1
        entry.last = now
        over = entry.count - self.free_failures
        if over > 0:
            entry.locked_until = now + min(self.max_s, self.base_s * 2 ** min(over - 1, 30))
        self._by_address[address] = entry
        self._by_address.move_to_end(address)
        while len(self._by_address) > self.max_addresses:
            self._by_address.popitem(last=False)
        return entry.count

    def succeeded(self, address: str) -> None:
        self._by_address.pop(address, None)

    def __len__(self) -> int:
        return len(self._by_address)

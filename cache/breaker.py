"""A circuit breaker, so that requests do not each wait for a Redis that is down."""

from __future__ import annotations

import time


class CircuitBreaker:
    """Closed: calls go through. After `threshold` consecutive failures it opens for
    `cooldown` seconds (calls skip Redis at once); then one call at a time probes it."""

    def __init__(self, threshold: int = 3, cooldown: float = 2.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if time.monotonic() - self.opened_at < self.cooldown else "half-open"

    def allows(self) -> bool:
        if self.opened_at is None:
            return True
        if time.monotonic() - self.opened_at >= self.cooldown:
            self.opened_at = time.monotonic()  # let this one probe; the rest wait another period
            return True
        return False

    def succeeded(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()

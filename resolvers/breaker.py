"""A per-vendor circuit breaker: after consecutive failures stop calling the vendor, then probe it once."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum


class BreakerState(Enum):
    """CLOSED: calls flow. OPEN: calls fail fast. HALF_OPEN: one probe call decides."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CircuitBreaker:
    """Opens after `threshold` consecutive transient failures; after `cooldown_s` lets one probe through.

    Only failures that say the vendor is unwell count (5xx, timeouts, broken connections); a rejection or a
    throttle is an answer from a working vendor. `threshold` 0 disables the breaker.
    """

    def __init__(
        self,
        threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.threshold = threshold
        #: Told the state entered on every transition (metrics, logs).
        self.on_change = on_change
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        #: State changes since start, for metrics: (from, to) -> count.
        self.transitions: dict[tuple[BreakerState, BreakerState], int] = {}

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose cool-down is over reads HALF_OPEN)."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        """May a call start now? In HALF_OPEN only one (the probe) may be in flight."""
        if self.threshold <= 0:
            return True
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_s - self._clock())

    def success(self) -> None:
        """A call succeeded (or the vendor answered at all): close."""
        self._failures = 0
        self._probing = False
        if self._state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def failure(self) -> None:
        """A call failed transiently: count it; open at the threshold, or again after a failed probe."""
        if self.threshold <= 0:
            return
        self._failures += 1
        was_probe = self._probing
        self._probing = False
        if was_probe or self._state is BreakerState.HALF_OPEN or self._failures >= self.threshold:
            self._opened_at = self._clock()
            if self._state is not BreakerState.OPEN:
                self._move(BreakerState.OPEN)

    def release(self) -> None:
        """A call that ended without telling (cancelled, a bug): a probe slot is freed, nothing is counted."""
        self._probing = False

    def _move(self, to: BreakerState) -> None:
        key = (self._state, to)
        self.transitions[key] = self.transitions.get(key, 0) + 1
        self._state = to
        if self.on_change is not None:
            self.on_change(to)

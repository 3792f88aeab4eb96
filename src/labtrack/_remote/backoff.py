"""Exponential backoff with jitter (pure: the random source is a parameter)."""

from __future__ import annotations

import random
from typing import Callable


class Backoff:
    """Delays that double after each failure up to `cap`, each scaled by a random factor.

    The factor is drawn from [0.5, 1.0) ("equal jitter"): many clients that lost the same
    server spread out their retries, and no delay collapses to zero.

    Example:
        >>> b = Backoff(base=0.5, cap=8.0, rand=lambda: 0.0)
        >>> [b.next_delay() for _ in range(6)]
        [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    """

    def __init__(self, base: float = 0.5, cap: float = 10.0,
                 rand: Callable[[], float] = random.random) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base}, cap={cap}")
        self.base = base
        self.cap = cap
        self._rand = rand
        self.failures = 0

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next try."""
        ceiling = min(self.cap, self.base * (2.0 ** min(self.failures, 60)))
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self._rand())

    def reset(self) -> None:
        """A success: the next failure starts again from `base`."""
        self.failures = 0

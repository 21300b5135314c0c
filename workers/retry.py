"""Retry policy as data, declared once per topic next to its handlers."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import TRANSIENT_ERRORS


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_min: float = 1.0  # seconds before the first retry (before jitter)
    backoff_max: float = 60.0
    retry_on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS

    def should_retry(self, exc: BaseException, retries_done: int) -> bool:
        return isinstance(exc, self.retry_on) and retries_done < self.max_retries

    def countdown(self, retries_done: int, scale: float = 1.0) -> float:
        """Exponential backoff with "equal jitter": half the step is fixed, half
        random, so a burst of failures does not retry in lockstep yet no retry
        comes back immediately."""
        step = min(self.backoff_max, self.backoff_min * 2**retries_done)
        return scale * (step / 2 + random.uniform(0, step / 2))

"""Retry policy: what each class of provider error does to a delivery.

retryable -> planned again after exponential backoff with full jitter, at most MAX_ATTEMPTS;
rate_limited -> planned again at the provider's reset time (into the row's due_at, never a
long broker ETA); auth and permanent -> failed; unknown -> unknown (never resent blindly),
unless the provider deduplicates by idempotency key, in which case it is retried.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

MAX_ATTEMPTS = 8
BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=6)


def backoff(attempt: int, rng: random.Random | None = None) -> timedelta:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** max(0, attempt - 1)))
    return timedelta(seconds=(rng or random).uniform(0.5, 1.0) * ceiling.total_seconds())


def retry_due(now: datetime, attempt: int, reset_at: datetime | None = None) -> datetime:
    if reset_at is not None and reset_at > now:
        return reset_at + timedelta(seconds=random.uniform(0, 2))  # spread the herd at reset
    return now + backoff(attempt)

"""Retry policy: what each class of provider error does to a delivery.

retryable -> planned again after exponential backoff with jitter, at most ``run.max_attempts``;
rate_limited -> planned again at the provider's reset time (into the row's due_at, never a
long broker ETA); auth and permanent -> failed; unknown -> unknown (never resent blindly),
unless the provider deduplicates by idempotency key, in which case it is retried.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from syndicate.settings import Run


def backoff(attempt: int, run: Run, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: between half and all of min(max, base * 2**(attempt-1)).

    The jitter spreads workers that failed together; the lower half-bound keeps a retry from
    hammering a struggling provider immediately.
    """
    ceiling = min(run.retry_max, run.retry_base * (2 ** max(0, attempt - 1)))
    return ceiling * (rng or random).uniform(0.5, 1.0)


def retry_due(now: datetime, attempt: int, run: Run, reset_at: datetime | None = None) -> datetime:
    if reset_at is not None and reset_at > now:
        return reset_at + timedelta(seconds=random.uniform(0, 1))  # don't all wake at the same instant
    return now + backoff(attempt, run)

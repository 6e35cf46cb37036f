"""The one error vocabulary of a send: how a provider call (or a batch of them) ended.

Providers raise these (``providers/``), the per-recipient bookkeeping of an email send raises
some of them too (``email/recipients.py``), and the engine decides what each class means:
retry with backoff, wait for a reset, ask a human, give up. It sits at the bottom of the
package order so that every layer above can import it downward.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar


class ProviderError(Exception):
    """Base of the error vocabulary. ``str()`` must never contain a secret."""

    error_class: ClassVar[str] = "permanent"

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class Retryable(ProviderError):
    """A passing fault (5xx, connection refused before sending): try again after a backoff."""

    error_class = "retryable"


class RateLimited(Retryable):
    """The provider asked us to wait; ``reset_at`` is when it said we may try again."""

    error_class = "rate_limited"

    def __init__(self, message: str, *, reset_at: datetime | None = None, status: int | None = 429):
        super().__init__(message, status=status)
        self.reset_at = reset_at


class AuthExpired(ProviderError):
    """Credentials are missing, wrong or expired: a human must fix them; retrying won't help."""

    error_class = "auth"


class Permanent(ProviderError):
    """The provider refused this payload (400, duplicate content): never retried."""

    error_class = "permanent"


class Incomplete(ProviderError):
    """A long batch stopped at its time budget with work left (recipients not yet mailed):
    the delivery continues in the next task at once, and this does not count as an attempt."""

    error_class = "incomplete"


class ClaimLost(Incomplete):
    """The delivery is no longer this send's: its lease was reaped (then it was planned again,
    cancelled, or claimed by another worker). The batch stops mailing at once; what it sent is
    recorded per recipient. The engine's transitions are fenced by the claim token, so nothing
    this stale send reports changes the delivery."""


class Duplicate(Permanent):
    """The provider refused the post as a duplicate of one it already has. On a first attempt
    that is older content; on a retry it most likely means our earlier attempt went through."""

    error_class = "duplicate"


class OutcomeUnknown(ProviderError):
    """The request may have reached the provider (a timeout after sending): never resent blindly."""

    error_class = "unknown"


class Unresolved(OutcomeUnknown):
    """An email send reached everyone it could, but some recipients may or may not have the
    message (a worker died, or the connection dropped, after their content left): the delivery
    is not ``sent``; it waits for a person to settle those recipients one by one. The engine
    never retries it by itself."""

    def __init__(self, message: str, *, recipients: list[str]):
        super().__init__(message)
        self.recipients = recipients

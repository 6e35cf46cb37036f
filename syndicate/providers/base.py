"""The shared base of every provider adapter, and the one error vocabulary they all speak.

An adapter turns a stored payload into one outside call and reports the outcome as either a
SendResult or one of the ProviderError classes below. The engine decides what each class means
(retry with backoff, wait for a reset, ask a human, give up); adapters only classify.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

# The error vocabulary lives in syndicate/errors.py (below the email side, which raises it
# too); the adapters import it from here, with the rest of what an adapter needs.
from syndicate.errors import (  # noqa: F401
    AuthExpired,
    ClaimLost,
    Duplicate,
    Incomplete,
    OutcomeUnknown,
    Permanent,
    ProviderError,
    RateLimited,
    Retryable,
    Unresolved,
)
from syndicate.settings import Channel, Settings


@dataclass(frozen=True)
class Job:
    """One delivery as a provider sees it."""

    delivery_id: int
    key: str  # stable per delivery: an idempotency key where the provider supports one
    channel: str
    kind: str
    payload: dict[str, Any]
    post_url: str | None = None
    # The claim token this send holds (fencing): a provider that keeps the lease alive during a
    # long batch extends it only while the delivery still carries this token.
    token: str | None = None
    attempt: int = 1  # 1 for the first try; more means an earlier attempt may have created the post
    first_attempt_at: datetime | None = None  # when the first attempt started (stable across retries)
    # What earlier attempts noted for later ones (Threads: the media container they created).
    notes: dict[str, str] = field(default_factory=dict)
    # Saves a note in the ledger *now*, before the outside call that depends on it.
    note: Callable[[str, str], None] | None = field(default=None, compare=False, repr=False)

    def remember(self, name: str, value: str) -> None:
        self.notes[name] = value
        if self.note is not None:
            self.note(name, value)


@dataclass(frozen=True)
class SendResult:
    ref: str | None  # the provider's id for what it created
    url: str | None = None  # a link to it, where there is one
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The link comes from the provider's answer (a Mastodon instance's `url`, say) and is
        # shown as a link on the desk: only an absolute http(s) URL is kept, never `javascript:`.
        if self.url is not None and not _is_web_link(self.url):
            object.__setattr__(self, "url", None)


def _is_web_link(url: object) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url.strip())
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def batch_budget(settings: Settings) -> float:
    """Seconds a provider may spend on one batch before it raises Incomplete: half the task
    time limit, so a long newsletter never meets Celery's soft limit mid-recipient."""
    return settings.run.task_time_limit.total_seconds() / 2


def soft_time_limit() -> tuple[type[BaseException], ...]:
    """What to catch for Celery's soft time limit (``SoftTimeLimitExceeded``, which Celery raises
    wherever the task happens to be): a tuple for an ``except`` clause, empty without Celery."""
    try:
        from celery.exceptions import SoftTimeLimitExceeded
    except ImportError:  # the embedded runner works without Celery installed
        return ()
    return (SoftTimeLimitExceeded,)


class Provider:
    """Subclass per outside service. Keep network calls inside ``send`` and ``check``."""

    name: ClassVar[str] = "base"
    # True where the provider drops a repeated request with the same idempotency key, so an
    # outcome-unknown delivery may be retried safely (Mastodon's Idempotency-Key).
    deduplicates: ClassVar[bool] = False
    # How long the provider remembers an idempotency key (None: for good). A delivery whose
    # outcome is unknown is retried only within this window of its first attempt.
    dedup_window: ClassVar[timedelta | None] = None
    # True where ``lookup`` can tell whether an earlier attempt created the post (Facebook: the
    # page's recent posts; Threads: the saved container's status). The engine then retries an
    # unknown outcome, asking ``lookup`` first (within ``dedup_window``), instead of a person.
    looks_up: ClassVar[bool] = False
    # True where the emails carry the web app's own unsubscribe link (web.public_url, served by
    # `syndicate serve`), not the provider's: SMTP and the direct-send APIs mailing our list.
    our_unsubscribe_link: ClassVar[bool] = False

    def __init__(self, settings: Settings, channel_name: str, channel: Channel):
        self.settings = settings
        self.channel_name = channel_name
        self.channel = channel

    def send(self, job: Job) -> SendResult:
        raise NotImplementedError

    def lookup(self, job: Job) -> SendResult | None:
        """What an earlier attempt of JOB created, or None when it surely created nothing (then
        the engine sends). Raise a ProviderError when the answer cannot be had now."""
        raise NotImplementedError

    def check(self) -> str:
        """A harmless read call proving the credentials work; returns a one-line description."""
        return "no credentials needed"

    def close(self) -> None:
        """Release connections held across a batch."""

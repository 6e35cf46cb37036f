"""Public signup: the hosted form and the blog's pasted form (`/subscribe`, web/signup.py).

Every public signup is double opt-in: the address is ``pending`` (never mailed) until its owner
POSTs the confirm link's page. Abuse protection, without third parties:

* a honeypot field (``website``) a person never sees and a bot fills: silently dropped;
* a ticket: a signed timestamp from the form (or ``GET /subscribe/ticket`` for the pasted
  form); a form sent within ``min_fill_seconds`` of it, or without one, is not accepted;
* rate limits per client address and per email address (``Limiter``: Redis, or in-process on
  the embedded default);
* one confirmation email to an address per ``confirm_every`` (10 minutes), however often it
  is entered;
* no enumeration: a new, pending, active or suppressed address gets the same answer. Only a
  new or pending one is mailed (a confirmation); an active one is not mailed again; a
  suppressed one is mailed only when the suppression is the person's own unsubscribe (they
  confirm to come back, ``suppression.lift_own_unsubscribe``), never after a bounce, complaint,
  removal or erasure.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syndicate.audience import preferences, subscribers, suppression
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Subscriber, Suppression, utcnow
from syndicate.settings import Settings, signing_secret

log = logging.getLogger(__name__)

_TICKET_SALT = "syndicate.signup-ticket"
TICKET_MAX_AGE = 86400  # a form left open for a day is asked to be sent again
HONEYPOT = "website"


class Refused(ValueError):
    """The form's input cannot be used; ``str()`` is the message shown on the form."""


class Throttled(Refused):
    """Too many signups from this client or for this address just now."""


class NeedsTicket(Refused):
    """No valid ticket (a bot, or a pasted form without its script): shown the hosted form."""


@dataclass
class Signup:
    address: str
    mail: str | None  # "confirm": send the confirmation email; None: send nothing
    why: str  # for the log: new, pending, throttled, active, suppressed, honeypot


# ---------------------------------------------------------------------------- tickets


def ticket(settings: Settings, now: float | None = None) -> str:
    """A signed "this form was shown at NOW" for the hidden field."""
    # Rounded down: rounding up could put the ticket in the future and refuse a form at once.
    return URLSafeTimedSerializer(signing_secret(settings.web), salt=_TICKET_SALT).dumps(
        math.floor((now if now is not None else time.time()) * 1000) / 1000)


def check_ticket(settings: Settings, value: str | None, now: float | None = None) -> None:
    """Raises NeedsTicket unless VALUE is our ticket, older than ``min_fill_seconds``."""
    if not value:
        raise NeedsTicket("Please press Subscribe once more to confirm.")
    try:
        shown = URLSafeTimedSerializer(signing_secret(settings.web), salt=_TICKET_SALT).loads(
            value, max_age=TICKET_MAX_AGE)
    except (SignatureExpired, BadSignature):
        raise NeedsTicket("This form was open too long; please press Subscribe once more.") from None
    if not isinstance(shown, int | float):
        raise NeedsTicket("Please press Subscribe once more to confirm.")
    if (now if now is not None else time.time()) - shown < settings.audience.signup.min_fill_seconds:
        raise NeedsTicket("That was very quick; please press Subscribe once more to confirm.")


# ---------------------------------------------------------------------------- rate limits


class Limiter:
    """Fixed one-hour windows counted in Redis (``INCR`` + ``EXPIRE``, shared by every web
    process) or, on the embedded default, in this process."""

    def __init__(self, redis_url: str | None):
        self.redis = None
        self.local: dict[str, tuple[int, float]] = {}
        self.lock = threading.Lock()
        if redis_url:
            import redis

            self.redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    @classmethod
    def for_settings(cls, settings: Settings) -> Limiter:
        mode = settings.audience.limits
        if mode == "memory":
            return cls(None)
        limiter = cls(settings.broker.url)
        if mode == "auto":
            try:
                limiter.redis.ping()
            except Exception as exc:  # the embedded default: no Redis running
                log.info("signup rate limits are counted in this process (Redis: %s)", type(exc).__name__)
                limiter.redis = None
        return limiter

    def hit(self, key: str, limit: int, window: int = 3600) -> bool:
        """Count one attempt for KEY; False once more than LIMIT happened in the window."""
        key = f"syndicate:signup:{key}"
        if self.redis is not None:
            pipe = self.redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, window, nx=True)
            count = pipe.execute()[0]
            return int(count) <= limit
        now = time.monotonic()
        with self.lock:
            count, start = self.local.get(key, (0, now))
            if now - start >= window:
                count, start = 0, now
            self.local[key] = (count + 1, start)
            if len(self.local) > 100_000:  # a flood of distinct keys: forget the oldest half
                for old in sorted(self.local, key=lambda k: self.local[k][1])[:50_000]:
                    del self.local[old]
            return count + 1 <= limit


# ---------------------------------------------------------------------------- the request


def check_address(value: str) -> str:
    """The normalized address, or Refused with a message a reader understands."""
    try:
        return subscribers.normalize(value)
    except subscribers.InvalidAddress as exc:
        if not (value or "").strip():
            raise Refused("Please enter your email address.") from None
        raise Refused(f"That does not look like an email address we can send to: {exc}") from None


def request(factory: sessionmaker[Session], settings: Settings, limiter: Limiter, *, email: str,
            client: str, honeypot: str = "", ticket_value: str | None = None,
            now: datetime | None = None) -> Signup:
    """One signup from the form. Raises Refused (bad input: shown on the form) or Throttled;
    otherwise the same Signup answer whatever the address's state (module doc)."""
    conf = settings.audience.signup
    address = check_address(email)
    if honeypot:
        return Signup(address, None, "honeypot")
    check_ticket(settings, ticket_value)
    if not limiter.hit(f"ip:{client}", conf.per_ip_per_hour):
        raise Throttled("Too many signups from your network just now; please try again in an hour.")
    if not limiter.hit(f"address:{address}", conf.per_address_per_hour):
        raise Throttled("Too many signups for this address just now; please try again in an hour.")
    now = now or utcnow()
    with transaction(factory) as s:
        return _record(s, settings, address, now)


def _record(s: Session, settings: Settings, address: str, now: datetime) -> Signup:
    row = s.scalar(select(Subscriber).where(Subscriber.email == address))
    if suppression.is_suppressed(s, address, settings):
        if row is None or row.status != "unsubscribed" or _removed(s, address):
            return Signup(address, None, "suppressed")  # bounced, complained, removed, forgotten
    elif row is not None and row.status == "active":
        return Signup(address, None, "active")
    if row is None:
        row = Subscriber(email=address, name="", status="pending", source="web", created_at=now)
        s.add(row)
        s.flush()
    if row.confirm_sent_at is not None and now - _aware(row.confirm_sent_at) < settings.audience.signup.confirm_every:
        return Signup(address, None, "throttled")
    row.confirm_sent_at = now
    return Signup(address, "confirm", "new" if row.status == "pending" else "returning")


def _removed(s: Session, address: str) -> bool:
    reason = s.scalar(select(Suppression.reason).where(Suppression.email == address))
    return reason is None or reason.startswith("removed")  # None: suppressed only as a keyed hash


def _aware(when: datetime) -> datetime:
    from datetime import UTC

    return when if when.tzinfo else when.replace(tzinfo=UTC)


def confirm(factory: sessionmaker[Session], settings: Settings, address: str,
            now: datetime | None = None) -> str:
    """The owner confirmed (POST): pending becomes active; their own unsubscribe is lifted.
    Returns "active", "unsubscribed" (suppressed for another reason) or "unknown"."""
    now = now or utcnow()
    with transaction(factory) as s:
        suppression.lift_own_unsubscribe(s, address)
        row = s.scalar(select(Subscriber).where(Subscriber.email == address.lower()))
        if row is None:
            return "unknown"
        if suppression.is_suppressed(s, address, settings):
            return "unsubscribed"
        if row.status in ("pending", "unsubscribed"):
            row.status, row.confirmed_at, row.unsubscribed_at = "active", now, None
            if row.cadence is None and (offered := preferences.offered_cadences(settings)):
                row.cadence = offered[0]  # a new reader starts on the first cadence on offer
        return row.status

"""One suppression list and one deliverability event log, whatever service sends the mail.

Every bounce, complaint and unsubscribe a mail service reports (an SMTP 5xx, a DSN, an SES,
SendGrid, Postmark or Mailgun webhook, a Mailchimp or Buttondown list read back) goes through
``record_event``: the event is stored once per (provider, provider event id), so a replay
changes nothing, and the rule is applied:

* a hard bounce or a complaint suppresses the address at once;
* a soft bounce suppresses it once ``deliverability.soft_bounce_limit`` of them arrived within
  ``deliverability.soft_bounce_days``;
* an unsubscribe reported by a service suppresses it;
* an address the tool never knew (not a subscriber, never a recipient) is recorded, and
  otherwise ignored: a stray or misrouted event does not grow the list.

``is_suppressed`` / ``suppressed_among`` is the one check: every email provider that mails the
tool's own list asks it for every recipient (``email.recipients.pending_recipients``), and an
import asks it too, so switching provider keeps the list. Nothing lifts a suppression except
staff (``restore``: ``syndicate subscribers restore EMAIL``).

A forgotten address (a data-protection erasure, ``audience/privacy.py``) stays suppressed as a
keyed hash (HMAC-SHA256 under the ``web.secret_env`` key): the check compares both forms.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from syndicate.ledger.models import DeliverabilityEvent, RecipientSend, Subscriber, Suppression, utcnow
from syndicate.ledger.upsert import insert_ignore
from syndicate.settings import Settings, secret

log = logging.getLogger(__name__)

HASH_PREFIX = "hmac:"  # a suppression or event row whose address was forgotten
SUPPRESSING = {"complaint": "complained", "unsubscribe": "unsubscribed"}  # kind -> subscriber status
HARD = {"hard", "permanent"}  # bounce subtypes that suppress at once
_FORGET_SALT = b"syndicate.forget\0"


# ---------------------------------------------------------------------------- the keyed hash


def keyed_hash(settings: Settings, address: str) -> str:
    """The form a forgotten address keeps: ``hmac:`` + HMAC-SHA256(key, address), hex."""
    key = secret(settings.web.secret_env, "web.secret_env (the key that hashes forgotten addresses)")
    digest = hmac.new(_FORGET_SALT + key.encode(), _clean(address).encode(), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest


def _clean(address: str) -> str:
    return (address or "").strip().lower()


def _has_hashed(s: Session) -> bool:
    return s.scalar(select(Suppression.id).where(Suppression.email.like(HASH_PREFIX + "%")).limit(1)) is not None


# ---------------------------------------------------------------------------- the check


def suppressed_among(s: Session, addresses: Iterable[str], settings: Settings | None = None) -> set[str]:
    """Of ADDRESSES (lower-cased), the ones never to be mailed: on the list as themselves, or as
    their keyed hash (forgotten). The hash needs the key, read through SETTINGS: every send path
    passes them; without them only the plain form is compared (and a warning logged where
    forgotten addresses exist)."""
    wanted = {_clean(a) for a in addresses}
    wanted.discard("")
    if not wanted:
        return set()
    found: set[str] = set()
    ordered = sorted(wanted)
    for start in range(0, len(ordered), 500):
        found.update(s.scalars(select(Suppression.email).where(Suppression.email.in_(ordered[start:start + 500]))))
    if _has_hashed(s):
        if settings is None:
            log.warning("forgotten addresses are suppressed by keyed hash; this check was given no settings to "
                        "compute it and compared the plain addresses only")
            return found
        hashes = {keyed_hash(settings, a): a for a in wanted - found}
        names = sorted(hashes)
        for start in range(0, len(names), 500):
            found.update(hashes[h] for h in s.scalars(
                select(Suppression.email).where(Suppression.email.in_(names[start:start + 500]))))
    return found


def is_suppressed(s: Session, address: str, settings: Settings | None = None) -> bool:
    """The one check: may ADDRESS never be mailed? (See ``suppressed_among``.)"""
    return bool(suppressed_among(s, [address], settings))


def suppress(s: Session, address: str, reason: str, *, status: str = "unsubscribed",
             now: datetime | None = None) -> bool:
    """In S's transaction: never mail ADDRESS again; its subscription (if any) gets STATUS.
    True if newly suppressed."""
    now = now or utcnow()
    address = _clean(address)
    added = insert_ignore(s, Suppression, {"email": address, "reason": reason[:200], "at": now}, ["email"])
    row = s.scalar(select(Subscriber).where(Subscriber.email == address))
    if row is not None and row.status in ("active", "pending"):
        row.status, row.unsubscribed_at = status, now
    return added


def restore(s: Session, settings: Settings, address: str) -> bool:
    """Staff lift ADDRESS's suppression (both forms); its subscription, if any, becomes active
    again (pending if it never confirmed). True if it was suppressed. The only way back."""
    address = _clean(address)
    forms = [address]
    if _has_hashed(s):
        forms.append(keyed_hash(settings, address))
    gone = s.execute(delete(Suppression).where(Suppression.email.in_(forms))).rowcount
    row = s.scalar(select(Subscriber).where(Subscriber.email == address))
    if row is not None and row.status not in ("active", "pending"):
        row.status = "active" if row.confirmed_at else "pending"
        row.unsubscribed_at = None
    return bool(gone)


def lift_own_unsubscribe(s: Session, address: str) -> bool:
    """In S's transaction: the owner of ADDRESS confirmed a new signup (a POST from the link in
    the confirmation email, which only the mailbox's owner can read): an *unsubscribe* of
    theirs is lifted. A bounce, a complaint, an operator's removal or an erasure is never
    lifted here (only ``restore``, by staff). True if lifted."""
    address = _clean(address)
    row = s.scalar(select(Suppression).where(Suppression.email == address))
    sub = s.scalar(select(Subscriber).where(Subscriber.email == address))
    # Bounces and complaints leave the status "bounced" / "complained"; a removal says so.
    if row is None or sub is None or sub.status != "unsubscribed" or row.reason.startswith("removed"):
        return False
    s.delete(row)
    return True


# ---------------------------------------------------------------------------- events


def record_event(s: Session, settings: Settings, *, provider: str, kind: str, email: str, subtype: str = "",
                 diagnostic: str = "", event_id: str | None = None, occurred_at: datetime | None = None,
                 delivery_id: int | None = None) -> bool:
    """Store one event a mail service reported and apply the rule (module doc), in S's
    transaction. Returns True if the event is new; a replay (same provider and EVENT_ID) returns
    False and changes nothing.

    KIND: ``bounce`` | ``complaint`` | ``unsubscribe`` | anything else (stored only).
    SUBTYPE for a bounce: ``hard`` | ``soft`` (any other word counts as soft)."""
    address = _clean(email)
    kind, subtype = kind.strip().lower(), subtype.strip().lower()
    now = utcnow()
    when = _aware(occurred_at) or now
    if event_id is None and occurred_at is not None:
        # No id from the service: the same report read twice is still one event.
        event_id = "derived:" + hashlib.sha256(
            f"{kind}\0{subtype}\0{address}\0{when.isoformat()}".encode()).hexdigest()[:40]
    if delivery_id is None and address:
        delivery_id = s.scalar(select(RecipientSend.delivery_id).where(RecipientSend.recipient == address)
                               .order_by(RecipientSend.id.desc()).limit(1))
    new = insert_ignore(s, DeliverabilityEvent, {
        "provider": provider[:40], "kind": kind[:20], "subtype": subtype[:40], "email": address[:320],
        "diagnostic": (diagnostic or "")[:2000], "delivery_id": delivery_id,
        "provider_event_id": event_id[:300] if event_id else None, "occurred_at": when, "received_at": now,
    }, ["provider", "provider_event_id"])
    if not new or not address:
        return new
    _apply(s, settings, provider, kind, subtype, address, diagnostic, when)
    return True


def _apply(s: Session, settings: Settings, provider: str, kind: str, subtype: str, address: str,
           diagnostic: str, when: datetime) -> None:
    if not _known(s, address):
        log.info("%s %s for %s: not an address this tool mails; recorded, nothing suppressed", provider, kind,
                 address)
        return
    why = f"{provider} {kind}" + (f" ({subtype})" if subtype else "") + (f": {diagnostic}" if diagnostic else "")
    if kind in SUPPRESSING:
        suppress(s, address, why, status=SUPPRESSING[kind], now=when)
    elif kind == "bounce" and subtype in HARD:
        suppress(s, address, why, status="bounced", now=when)
    elif kind == "bounce":
        limit, days = settings.deliverability.soft_bounce_limit, settings.deliverability.soft_bounce_days
        soft = s.scalar(select(func.count()).select_from(DeliverabilityEvent).where(
            DeliverabilityEvent.email == address, DeliverabilityEvent.kind == "bounce",
            DeliverabilityEvent.subtype.not_in(sorted(HARD)),
            DeliverabilityEvent.occurred_at >= when - timedelta(days=days))) or 0
        if soft >= limit:
            suppress(s, address, f"{soft} soft bounces within {days} days; last: {why}", status="bounced", now=when)


def _known(s: Session, address: str) -> bool:
    """A subscriber, a past recipient, or already suppressed."""
    return any(s.scalar(select(column).where(column == address).limit(1)) is not None
               for column in (Subscriber.email, RecipientSend.recipient, Suppression.email))


def _aware(when: datetime | None) -> datetime | None:
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when


def events_for(s: Session, forms: Iterable[str]) -> list[DeliverabilityEvent]:
    forms = list(forms)
    return list(s.scalars(select(DeliverabilityEvent).where(DeliverabilityEvent.email.in_(forms))
                          .order_by(DeliverabilityEvent.occurred_at, DeliverabilityEvent.id)))


def suppression_for(s: Session, forms: Iterable[str]) -> Suppression | None:
    return s.scalar(select(Suppression).where(Suppression.email.in_(list(forms))).limit(1))


def delivery_of(s: Session, address: str, message_id: str | None) -> int | None:
    """The delivery whose message to ADDRESS had MESSAGE_ID (the id the service gave it; a
    SendGrid event's id extends the X-Message-Id it answered with), else None."""
    if not message_id:
        return None
    bare = message_id.strip().strip("<>")
    candidates = {bare, f"<{bare}>", bare.split(".", 1)[0]}
    return s.scalar(select(RecipientSend.delivery_id)
                    .where(RecipientSend.recipient == _clean(address), RecipientSend.message_id.in_(sorted(candidates)))
                    .order_by(RecipientSend.id.desc()).limit(1))


# ---------------------------------------------------------------------------- rates

# What the services hold senders to: Amazon SES reviews an account at a 5 % bounce rate and
# 0.1 % complaints; Gmail's sender guidelines ask for spam reports below 0.3 %. "Near" is 80 %.
LIMITS = (("bounce", 0.05, "Amazon SES reviews accounts at a 5 % bounce rate"),
          ("complaint", 0.001, "Amazon SES reviews accounts at 0.1 % complaints"),
          ("complaint", 0.003, "Gmail wants spam reports below 0.3 %"))
NEAR = 0.8


def rate_warnings(sent: int, bounced: int, complained: int) -> list[str]:
    """One line per limit a rate is over or near."""
    if not sent:
        return []
    rates = {"bounce": bounced / sent, "complaint": complained / sent}
    lines = []
    for kind, limit, why in LIMITS:
        if rates[kind] >= limit * NEAR:
            word = "over" if rates[kind] >= limit else "near"
            lines.append(f"{kind} rate {rates[kind]:.2%} is {word} the limit: {why}")
    return lines


def delivery_rates(s: Session, delivery_ids: Iterable[int] | None = None) -> dict[int, dict]:
    """Per email delivery: recipients sent, bounced and complained (distinct addresses), the
    rates, and warnings (``rate_warnings``)."""
    sent_q = (select(RecipientSend.delivery_id, func.count()).where(RecipientSend.state == "sent")
              .group_by(RecipientSend.delivery_id))
    events_q = (select(DeliverabilityEvent.delivery_id, DeliverabilityEvent.kind,
                       func.count(func.distinct(DeliverabilityEvent.email)))
                .where(DeliverabilityEvent.delivery_id.is_not(None),
                       DeliverabilityEvent.kind.in_(("bounce", "complaint")))
                .group_by(DeliverabilityEvent.delivery_id, DeliverabilityEvent.kind))
    if delivery_ids is not None:
        ids = list(delivery_ids)
        sent_q = sent_q.where(RecipientSend.delivery_id.in_(ids))
        events_q = events_q.where(DeliverabilityEvent.delivery_id.in_(ids))
    result: dict[int, dict] = {}
    for delivery_id, n in s.execute(sent_q):
        result.setdefault(delivery_id, {"sent": 0, "bounce": 0, "complaint": 0})["sent"] = n
    for delivery_id, kind, n in s.execute(events_q):
        result.setdefault(delivery_id, {"sent": 0, "bounce": 0, "complaint": 0})[kind] = n
    return {d: summarize(v["sent"], v["bounce"], v["complaint"]) for d, v in result.items()}


def summarize(sent: int, bounced: int, complained: int) -> dict:
    return {"sent": sent, "bounced": bounced, "complained": complained,
            "bounce_rate": round(bounced / sent, 5) if sent else None,
            "complaint_rate": round(complained / sent, 5) if sent else None,
            "warnings": rate_warnings(sent, bounced, complained)}


def channel_rates(per_delivery: dict[int, dict], channel_of: dict[int, str]) -> dict[str, dict]:
    """The per-delivery counts (``delivery_rates``) added up per channel."""
    totals: dict[str, list[int]] = {}
    for delivery_id, r in per_delivery.items():
        t = totals.setdefault(channel_of.get(delivery_id, "?"), [0, 0, 0])
        t[0], t[1], t[2] = t[0] + r["sent"], t[1] + r["bounced"], t[2] + r["complained"]
    return {channel: summarize(*t) for channel, t in sorted(totals.items())}

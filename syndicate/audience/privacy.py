"""Data-protection requests: everything held about a person, and erasing it.

``export`` gathers, for one address or for all, the subscriber row, every per-recipient send
record, every deliverability event and the suppression. ``forget`` erases the address from the
subscriber list, the send records and the events, and keeps only its keyed hash (HMAC under the
``web.secret_env`` key) in the suppression list, so the person is still never mailed: the one
suppression check compares both forms (``audience/suppression.py``). Without the key, nothing is
erased (an erased address that could be mailed again would be worse).
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from syndicate.audience import suppression
from syndicate.ledger.models import DeliverabilityEvent, RecipientSend, Subscriber, Suppression, utcnow
from syndicate.ledger.upsert import insert_ignore
from syndicate.settings import Settings


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def export(s: Session, settings: Settings, address: str | None = None) -> list[dict]:
    """One record per address (ADDRESS only, or every address held), with everything held."""
    if address is not None:
        addresses = [address.strip().lower()]
    else:
        addresses = sorted(set(s.scalars(select(Subscriber.email)))
                           | set(s.scalars(select(RecipientSend.recipient)))
                           | set(s.scalars(select(DeliverabilityEvent.email)))
                           | set(s.scalars(select(Suppression.email))))
    return [_one(s, settings, a) for a in addresses]


def _one(s: Session, settings: Settings, address: str) -> dict:
    forms = [address]
    if not address.startswith(suppression.HASH_PREFIX) and s.scalar(
            select(Suppression.id).where(Suppression.email.like(suppression.HASH_PREFIX + "%")).limit(1)):
        forms.append(suppression.keyed_hash(settings, address))
    sub = s.scalar(select(Subscriber).where(Subscriber.email == address))
    held = suppression.suppression_for(s, forms)
    return {
        "email": address,
        "subscriber": None if sub is None else {
            "name": sub.name, "status": sub.status, "source": sub.source, "created_at": _iso(sub.created_at),
            "invited_at": _iso(sub.invited_at), "confirmed_at": _iso(sub.confirmed_at),
            "unsubscribed_at": _iso(sub.unsubscribed_at)},
        "recipient_sends": [
            {"delivery_id": r.delivery_id, "state": r.state, "message_id": r.message_id, "code": r.code,
             "detail": r.error, "attempts": r.attempts, "created_at": _iso(r.created_at),
             "updated_at": _iso(r.updated_at)}
            for r in s.scalars(select(RecipientSend).where(RecipientSend.recipient.in_(forms))
                               .order_by(RecipientSend.id))],
        "events": [
            {"provider": e.provider, "kind": e.kind, "subtype": e.subtype, "diagnostic": e.diagnostic,
             "delivery_id": e.delivery_id, "provider_event_id": e.provider_event_id,
             "occurred_at": _iso(e.occurred_at), "received_at": _iso(e.received_at)}
            for e in suppression.events_for(s, forms)],
        "suppression": None if held is None else {"reason": held.reason, "at": _iso(held.at),
                                                  "forgotten": held.email.startswith(suppression.HASH_PREFIX)},
    }


def forget(s: Session, settings: Settings, address: str) -> dict[str, int]:
    """Erase ADDRESS (see the module doc), in S's transaction; what was erased, counted."""
    address = address.strip().lower()
    hashed = suppression.keyed_hash(settings, address)  # raises without the key: nothing erased
    counts = {"subscriber": s.execute(delete(Subscriber).where(Subscriber.email == address)).rowcount}
    # Send records and events keep their place (counts, exactly-once) under the hash.
    counts["recipient_sends"] = s.execute(
        update(RecipientSend).where(RecipientSend.recipient == address)
        .values(recipient=hashed, error=None).execution_options(synchronize_session=False)).rowcount
    counts["events"] = s.execute(
        update(DeliverabilityEvent).where(DeliverabilityEvent.email == address)
        .values(email=hashed, diagnostic="").execution_options(synchronize_session=False)).rowcount
    s.execute(delete(Suppression).where(Suppression.email == address))
    insert_ignore(s, Suppression, {"email": hashed, "reason": "forgotten (data-protection erasure)",
                                   "at": utcnow()}, ["email"])
    return counts

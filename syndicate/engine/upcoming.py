"""What goes out next: planned and held deliveries, and each digest channel's next edition."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from syndicate.engine.schedule import digest_edition_key, next_digest
from syndicate.ledger.counts import Count, cap_above, capped_count
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Post, utcnow
from syndicate.settings import Settings

PENDING = ("planned", "held", "claimed", "sending")


def upcoming(settings: Settings, at: datetime | None = None, limit: int | None = None) -> list[dict]:
    """What goes out next: the first LIMIT pending deliveries by due time (default all), and the
    next edition of every digest channel."""
    at = at or utcnow()
    rows = _pending(settings, limit) + _next_editions(settings, at)
    return sorted(rows, key=lambda r: (r["utc"], r["channel"]))


def pending_count(settings: Settings, cap: int | None = None, shown: int = 0) -> Count:
    """How many deliveries are still to go out, counted up to CAP (ledger/counts.py; kept above
    SHOWN, the rows printed): a flood of held ones makes "10,000+", not a count as long as it."""
    with transaction(open_ledger(settings.store_url)) as s:
        return capped_count(s, [Delivery.state.in_(PENDING)], cap_above(shown, cap))


def _entry(settings: Settings, when: datetime, channel: str, what: str, state: str, note: str | None = None,
           delivery_id: int | None = None) -> dict:
    return {"utc": when.isoformat(), "local": when.astimezone(settings.site.tz).isoformat(), "channel": channel,
            "what": what, "state": state, "note": note, "delivery_id": delivery_id}


def _pending(settings: Settings, limit: int | None) -> list[dict]:
    # The columns shown, not whole rows: a flood of held deliveries must not load every payload.
    query = (select(Delivery.id, Delivery.due_at, Delivery.channel, Delivery.subject, Delivery.state,
                    Delivery.hold_reason, Post.title).outerjoin(Post, Delivery.post_id == Post.id)
             .where(Delivery.state.in_(PENDING)).order_by(Delivery.due_at, Delivery.id))
    with transaction(open_ledger(settings.store_url)) as s:
        rows = s.execute(query.limit(limit) if limit else query).all()
    return [_entry(settings, r.due_at, r.channel, r.title or r.subject, r.state, r.hold_reason, r.id) for r in rows]


def _next_editions(settings: Settings, at: datetime) -> list[dict]:
    result = []
    for name, channel in settings.enabled_channels().items():
        if channel.mode == "digest":
            when = next_digest(channel, settings, at)
            result.append(_entry(settings, when, name, f"digest edition {digest_edition_key(channel, settings, when)}",
                                 "next edition"))
    return result

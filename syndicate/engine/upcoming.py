"""What goes out next: planned and held deliveries, and each digest channel's next edition."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from syndicate.engine.schedule import digest_edition_key, next_digest
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Post, utcnow
from syndicate.settings import Settings


def upcoming(settings: Settings, at: datetime | None = None) -> list[dict]:
    at = at or utcnow()
    rows = _pending(settings) + _next_editions(settings, at)
    return sorted(rows, key=lambda r: (r["utc"], r["channel"]))


def _entry(settings: Settings, when: datetime, channel: str, what: str, state: str, note: str | None = None,
           delivery_id: int | None = None) -> dict:
    return {"utc": when.isoformat(), "local": when.astimezone(settings.site.tz).isoformat(), "channel": channel,
            "what": what, "state": state, "note": note, "delivery_id": delivery_id}


def _pending(settings: Settings) -> list[dict]:
    with transaction(open_ledger(settings.store_url)) as s:
        rows = s.execute(select(Delivery, Post.title).outerjoin(Post, Delivery.post_id == Post.id)
                         .where(Delivery.state.in_(("planned", "held", "claimed", "sending")))).all()
        return [_entry(settings, d.due_at, d.channel, title or d.subject, d.state, d.hold_reason, d.id)
                for d, title in rows]


def _next_editions(settings: Settings, at: datetime) -> list[dict]:
    result = []
    for name, channel in settings.enabled_channels().items():
        if channel.mode == "digest":
            when = next_digest(channel, settings, at)
            result.append(_entry(settings, when, name, f"digest edition {digest_edition_key(channel, settings, when)}",
                                 "next edition"))
    return result

"""Sending one post by hand (`syndicate post`): a person's explicit go, still exactly once.

A manual send uses the same deliveries as the scheduled path (unique per post and channel), so
a post already sent on a channel is reported, never sent again; a held delivery is approved by
the act of sending it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine import actions
from syndicate.engine.deliver import deliver
from syndicate.engine.dispatch import claim_one
from syndicate.engine.planner import plan_post
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Post, utcnow
from syndicate.settings import Settings


@dataclass
class ManualResult:
    channel: str
    delivery_id: int | None
    state: str
    detail: str = ""


def send_post_now(factory: sessionmaker[Session], settings: Settings, post: Post, channels: list[str],
                  actor: str) -> list[ManualResult]:
    now = utcnow()
    _ensure_deliveries(factory, settings, post, channels, now)
    results = []
    for name in channels:
        with transaction(factory) as s:
            row = s.scalar(select(Delivery).where(Delivery.subject == f"post:{post.id}", Delivery.channel == name))
        results.append(_send_one(factory, settings, row, actor))
    return results


def _ensure_deliveries(factory, settings: Settings, post: Post, channels: list[str], now) -> None:
    with transaction(factory) as s:
        row = s.get(Post, post.id)
        if row.planned_at is None and row.plan != "ignore":
            # Not planned yet: plan it whole, as the planner would, so that sending one channel
            # by hand does not leave the post's other channels unplanned.
            if s.execute(update(Post).where(Post.id == post.id, Post.planned_at.is_(None))
                         .values(planned_at=now)).rowcount:
                plan_post(s, settings, row, now)
        elif row.planned_at is None:
            row.planned_at = now  # recorded without sending (first poll): only what is asked
        existing = set(s.scalars(select(Delivery.channel).where(Delivery.subject == f"post:{post.id}")))
        missing = [c for c in channels if c not in existing]
        if missing:
            plan_post(s, settings, row, now, channels=missing)


def _send_one(factory, settings: Settings, row: Delivery, actor: str) -> ManualResult:
    if row.state == "sent":
        return ManualResult(row.channel, row.id, "sent", f"already sent {row.sent_at:%Y-%m-%d %H:%M} UTC; "
                            "not sending twice")
    if row.state in ("claimed", "sending"):
        return ManualResult(row.channel, row.id, row.state, "a worker is sending it right now")
    if row.state not in ("planned", "held"):
        return ManualResult(row.channel, row.id, row.state,
                            row.last_error or row.hold_reason or "see `syndicate resolve`")
    actions.send_now(factory, row.id, actor)
    now = utcnow()
    claim = claim_one(factory, row.id, now, ttl=settings.run.claim_ttl, actor=actor)
    if claim is None:
        return ManualResult(row.channel, row.id, "busy", "a dispatcher claimed it first; it is on its way")
    outcome = deliver(factory, settings, claim.delivery_id, claim.token, actor=actor)
    return ManualResult(row.channel, row.id, outcome.state, outcome.detail)

"""Sending one post by hand (`syndicate post`): a person's explicit go, still exactly once.

A manual send uses the same deliveries as the scheduled path (unique per post and channel), so
a post already sent on a channel is reported, never sent again. A held delivery (safe
messaging, a flood, a person's hold) is sent only when the caller approves it explicitly
(`syndicate post --approve`, the desk's "Approve and send now"); otherwise nothing is sent.
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


class Held(actions.ActionRefused):
    """Some of the deliveries asked for are held and the caller did not approve them; nothing was sent."""

    def __init__(self, post_id: int, rows: list[Delivery]):
        self.rows = rows
        reasons = sorted({r.hold_reason or "waiting for approval" for r in rows})
        super().__init__(f"post {post_id}: {', '.join(r.channel for r in rows)} "
                         f"{'is' if len(rows) == 1 else 'are'} held ({'; '.join(reasons)})")


def send_post_now(factory: sessionmaker[Session], settings: Settings, post: Post, channels: list[str],
                  actor: str, approve: bool = False) -> list[ManualResult]:
    """Send POST on CHANNELS now; raises Held (sending nothing) if any is held and not APPROVE."""
    now = utcnow()
    _ensure_deliveries(factory, settings, post, channels, now)
    with transaction(factory) as s:
        rows = {row.channel: row for row in s.scalars(
            select(Delivery).where(Delivery.subject == f"post:{post.id}", Delivery.channel.in_(channels)))}
    held = [rows[name] for name in channels if rows[name].state == "held"]
    if held and not approve:
        raise Held(post.id, held)
    return [_send_one(factory, settings, rows[name], actor, approve) for name in channels]


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


def _send_one(factory, settings: Settings, row: Delivery, actor: str, approve: bool) -> ManualResult:
    if row.state == "sent":
        return ManualResult(row.channel, row.id, "sent", f"already sent {row.sent_at:%Y-%m-%d %H:%M} UTC; "
                            "not sending twice")
    if row.state in ("claimed", "sending"):
        return ManualResult(row.channel, row.id, row.state, "a worker is sending it right now")
    if row.state not in ("planned", "held"):
        return ManualResult(row.channel, row.id, row.state,
                            row.last_error or row.hold_reason or "see `syndicate resolve`")
    try:
        actions.send_now(factory, row.id, actor, approve=approve)
    except actions.ActionRefused as exc:  # it changed since we looked (a person held it meanwhile)
        return ManualResult(row.channel, row.id, "refused", str(exc).removeprefix(f"delivery {row.id}: "))
    now = utcnow()
    claim = claim_one(factory, row.id, now, ttl=settings.run.claim_ttl, actor=actor)
    if claim is None:
        return ManualResult(row.channel, row.id, "busy", "a dispatcher claimed it first; it is on its way")
    outcome = deliver(factory, settings, claim.delivery_id, claim.token, actor=actor)
    return ManualResult(row.channel, row.id, outcome.state, outcome.detail)

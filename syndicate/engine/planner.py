"""Planning: every new post becomes one delivery per enabled channel, rendered once.

Creation is idempotent: a delivery is unique per (subject, channel), so two planners running
at once create each delivery once. A post is planned once (``planned_at``); a channel added
later serves posts seen after it, never the archive.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine import carry
from syndicate.engine.schedule import due_at
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Event, Feed, Post
from syndicate.ledger.upsert import insert_ignore_many
from syndicate.model import PostData
from syndicate.settings import SOCIAL_KINDS, Settings

log = logging.getLogger(__name__)


@dataclass
class PlanResult:
    planned: int = 0
    held: int = 0
    skipped: int = 0
    failed: int = 0


# Posts per planning transaction: their deliveries are rendered before it and inserted in it.
PLAN_BATCH = 200


def plan_pending(factory: sessionmaker[Session], settings: Settings, now: datetime) -> PlanResult:
    """Create the deliveries of every post not planned yet, a batch of posts per transaction.

    Posts recorded without sending (a first poll beyond ``backfill``, a moved post) are marked
    planned by the INSERT that records them (engine/poll.py), so only posts to send come here.
    Each batch is rendered outside any transaction (the SQLite write lock is not held while
    templates run), then claimed and inserted in one: a post whose ``planned_at`` another planner
    set first is skipped, and its rendering thrown away.
    """
    result = PlanResult()
    last = 0
    while True:
        with transaction(factory) as s:
            batch = s.scalars(select(Post).where(Post.planned_at.is_(None), Post.id > last)
                              .order_by(Post.id).limit(PLAN_BATCH)).all()
            feeds = dict(s.execute(select(Feed.id, Feed.name).where(Feed.id.in_({p.feed_id for p in batch}))).all())
        if not batch:
            return result
        last = batch[-1].id
        rows = {post.id: [] if post.plan == "ignore" else delivery_rows(settings, post, now, feed=feeds.get(post.feed_id, ""))
                for post in batch}
        with transaction(factory) as s:
            # Claim the posts for planning: a second planner finds planned_at set and moves on.
            claimed = s.scalars(update(Post).where(Post.id.in_(list(rows)), Post.planned_at.is_(None))
                                .values(planned_at=now).returning(Post.id)).all()
            for state in insert_deliveries(s, [row for pid in claimed for row in rows[pid]], now):
                setattr(result, state, getattr(result, state) + 1)


def plan_post(s: Session, settings: Settings, post: Post, now: datetime,
              channels: list[str] | None = None) -> list[str]:
    """Create POST's deliveries (for CHANNELS, default all enabled); returns their states."""
    return insert_deliveries(s, delivery_rows(settings, post, now, channels, feed=carry.feed_name(s, post)), now)


def delivery_rows(settings: Settings, post: Post, now: datetime, channels: list[str] | None = None, *,
                  feed: str = "") -> list[dict]:
    """POST's deliveries, rendered (for CHANNELS, default all enabled), as rows to insert; FEED is
    the post's feed name, for the channels' include/exclude rules (engine/carry.py)."""
    from syndicate.render.safety import is_sensitive  # loaded when there is something to render

    data = PostData.from_dict(post.data)
    sensitive = is_sensitive(data, settings.safety)
    rows = []
    for index, (name, channel) in enumerate(settings.enabled_channels().items()):
        if (channels is not None and name not in channels) or channel.mode == "digest":
            continue  # digest channels are planned per edition, not per post
        if why := carry.refusal(settings, name, channel, feed, data.categories, bool(post.no_email)):
            state, reason, payload, error = "skipped", why, {}, None
        else:
            state, reason, payload, error = _render(data, settings, name, post, sensitive)
        rows.append({"key": uuid.uuid4().hex, "subject": f"post:{post.id}", "post_id": post.id, "channel": name,
                     "kind": channel.kind, "provider": channel.provider, "state": state,
                     "due_at": max(now, due_at(channel, settings, post.first_seen_at, index=index)),
                     "payload": payload, "post_url": post.url, "rendered_hash": post.content_hash or None,
                     "hold_reason": reason, "last_error": error,
                     "error_class": "render" if error else None, "created_at": now, "updated_at": now})
    return rows


def insert_deliveries(s: Session, rows: list[dict], now: datetime) -> list[str]:
    """Insert ROWS unless their (subject, channel) exists, with a 'created' event each, in a few
    statements; returns the states of those inserted."""
    by_key = {row["key"]: row for row in rows}
    inserted = insert_ignore_many(s, Delivery, rows, ["subject", "channel"], returning=(Delivery.id, Delivery.key))
    if not inserted:
        return []
    events = []
    for did, key in inserted:
        row = by_key[key]
        events.append({"delivery_id": did, "at": now, "actor": "planner", "action": "created",
                       "to_state": row["state"], "detail": row["hold_reason"] or row["last_error"]})
    s.execute(insert(Event), events)
    return [{"planned": "planned", "held": "held", "skipped": "skipped"}.get(by_key[key]["state"], "failed")
            for _, key in inserted]


def render_for(settings: Settings, post: Post, name: str):
    """(state, hold reason, payload, error) of POST on channel NAME, as the planner decides them:
    for a delivery whose first render failed and that a person asked to send again."""
    from syndicate.render.safety import is_sensitive

    data = PostData.from_dict(post.data)
    return _render(data, settings, name, post, is_sensitive(data, settings.safety))


def _render(data: PostData, settings: Settings, name: str, post: Post, sensitive: bool):
    """(state, hold reason, payload, error) for one channel."""
    from syndicate.email import privacy, routing  # with the renderers: when something is rendered
    from syndicate.render import NotApplicable
    from syndicate.render.payloads import build_payload

    channel = settings.channels[name]
    try:
        payload = build_payload(data, settings, name)
    except NotApplicable as exc:
        return "skipped", str(exc), {}, None
    except Exception as exc:  # a broken template must not stop the other posts and channels
        log.exception("rendering post %s for %s failed", post.id, name)
        return "failed", None, {}, f"render failed: {type(exc).__name__}: {exc}"
    if channel.kind == "email":  # third-party images: dropped or noted, per channel (held below)
        payload = privacy.apply(payload, settings, channel)
        if route := routing.route_for(settings, channel, [(post.id, data.categories)]):
            payload["route"] = route  # who on the list gets it (email/routing.py)
    flood = FLOOD_REASON if post.plan == "hold" else None
    # A privacy finding is shown first: the message is never sent as is, a person decides.
    reason = privacy.hold_reason(payload) or flood or content_hold_reason(settings, name, sensitive)
    return ("held" if reason else "planned"), reason, payload, None


FLOOD_REASON = "flood: many new posts appeared at once; approve to send"


def content_hold_reason(settings: Settings, name: str, sensitive: bool) -> str | None:
    """Why a copy of a post on channel NAME waits for a person whatever else happens: the channel
    asks for approval of every post, or the post is on a sensitive topic and the channel is a
    social network. Asked at planning, and again when a copy is rendered anew at send time
    (engine/fresh.py: an edit on the blog can make a post sensitive after it was planned)."""
    channel = settings.channels[name]
    if channel.hold:
        return "this channel asks for approval of every post"
    if sensitive and channel.kind in SOCIAL_KINDS and settings.safety.hold_social:
        return "sensitive topic (safe messaging): a person should approve social posts"
    return None

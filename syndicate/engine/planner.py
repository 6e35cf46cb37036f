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

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.email import privacy, routing
from syndicate.engine import carry
from syndicate.engine.schedule import due_at
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Event, Post
from syndicate.ledger.upsert import insert_ignore
from syndicate.model import PostData
from syndicate.render import NotApplicable
from syndicate.render.payloads import build_payload
from syndicate.render.safety import is_sensitive
from syndicate.settings import SOCIAL_KINDS, Settings

log = logging.getLogger(__name__)


@dataclass
class PlanResult:
    planned: int = 0
    held: int = 0
    skipped: int = 0
    failed: int = 0


def plan_pending(factory: sessionmaker[Session], settings: Settings, now: datetime) -> PlanResult:
    """Create the deliveries of every post not planned yet."""
    result = PlanResult()
    with transaction(factory) as s:
        pending = s.scalars(select(Post).where(Post.planned_at.is_(None)).order_by(Post.id)).all()
    for post in pending:
        with transaction(factory) as s:
            # Claim the post for planning: a second planner finds planned_at set and moves on.
            claimed = s.execute(update(Post).where(Post.id == post.id, Post.planned_at.is_(None))
                                .values(planned_at=now)).rowcount
            if claimed and post.plan != "ignore":
                for state in plan_post(s, settings, post, now):
                    setattr(result, state, getattr(result, state) + 1)
    return result


def plan_post(s: Session, settings: Settings, post: Post, now: datetime,
              channels: list[str] | None = None) -> list[str]:
    """Create POST's deliveries (for CHANNELS, default all enabled); returns their states."""
    data = PostData.from_dict(post.data)
    sensitive = is_sensitive(data, settings.safety)
    states = []
    for index, (name, channel) in enumerate(settings.enabled_channels().items()):
        if (channels is not None and name not in channels) or channel.mode == "digest":
            continue  # digest channels are planned per edition, not per post
        if why := carry.post_refusal(s, settings, name, post):
            state, reason, payload, error = "skipped", why, {}, None
        else:
            state, reason, payload, error = _render(data, settings, name, post, sensitive)
        row = {"key": uuid.uuid4().hex, "subject": f"post:{post.id}", "post_id": post.id, "channel": name,
               "kind": channel.kind, "provider": channel.provider, "state": state,
               "due_at": max(now, due_at(channel, settings, post.first_seen_at, index=index)), "payload": payload,
               "post_url": post.url, "rendered_hash": post.content_hash or None, "hold_reason": reason,
               "last_error": error,
               "error_class": "render" if error else None, "created_at": now, "updated_at": now}
        if insert_ignore(s, Delivery, row, ["subject", "channel"]):
            did = s.scalar(select(Delivery.id).where(Delivery.key == row["key"]))
            s.add(Event(delivery_id=did, at=now, actor="planner", action="created", to_state=state,
                        detail=reason or error))
            states.append({"planned": "planned", "held": "held", "skipped": "skipped"}.get(state, "failed"))
    return states


def render_for(settings: Settings, post: Post, name: str):
    """(state, hold reason, payload, error) of POST on channel NAME, as the planner decides them:
    for a delivery whose first render failed and that a person asked to send again."""
    data = PostData.from_dict(post.data)
    return _render(data, settings, name, post, is_sensitive(data, settings.safety))


def _render(data: PostData, settings: Settings, name: str, post: Post, sensitive: bool):
    """(state, hold reason, payload, error) for one channel."""
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
    reason = None
    if post.plan == "hold":
        reason = "flood: many new posts appeared at once; approve to send"
    elif channel.hold:
        reason = "this channel asks for approval of every post"
    elif sensitive and channel.kind in SOCIAL_KINDS and settings.safety.hold_social:
        reason = "sensitive topic (safe messaging): a person should approve social posts"
    reason = privacy.hold_reason(payload) or reason  # never sent as is: a person decides
    return ("held" if reason else "planned"), reason, payload, None

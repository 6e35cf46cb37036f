"""Evergreen re-share: a social channel shares an older post again (``channels.NAME.reshare``).

A post already has its one delivery per channel (``post:<id>``); a re-share is another delivery
of the same post on the same channel, so it needs a subject of its own. Its subject names the
*slot*: ``reshare:<slot start>``, the slot being the channel's ``reshare.every`` (one day by
default) aligned to local midnight in the site's time zone. The unique (subject, channel)
constraint then makes creation idempotent exactly as for posts and digest editions: two
dispatchers, a tick run twice or late, all create at most one re-share per channel per slot,
whichever post each of them chose. (A key per post, ``reshare:<post>:<n>``, would keep one post
from being re-shared twice, but two planners choosing different posts from different snapshots
would both succeed: two re-shares in one slot.) The post is the delivery's ``post_id``.

When, and what. A slot's re-share is created at the first tick inside the channel's send
window (outside its quiet hours), due at once; a slot with no open minute has none (never a
backlog of re-shares when the window opens). The post chosen is the one whose last delivery on
the channel is the oldest among those that:

- went out on this channel before (a ``sent`` delivery: a re-share never posts what a person
  held back or cancelled, nor the backlog a first poll only recorded);
- were published (else first seen) more than ``reshare.min_age`` ago;
- have had no delivery on the channel, in any state, for ``reshare.repeat_after`` (a cancelled
  re-share counts: "not this one" is not asked again the next day);
- are not sensitive by today's safety settings, and were never withdrawn (a delivery cancelled
  because the page answered 404/410); the send-time check (engine/fresh.py) runs on re-shares
  too, so a page taken down since is withdrawn, not shared.

It is rendered afresh (today's template, UTM values and media option) and held for approval
when the channel asks for approval of every post (``hold``), like any other delivery; the
desk's queue and calendar show it as a delivery of its post.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine.schedule import may_send_at
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Event, Post
from syndicate.ledger.upsert import insert_ignore
from syndicate.model import PostData
from syndicate.settings import SOCIAL_KINDS, Channel, Settings

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "reshare:"
HOLD_REASON = "this channel asks for approval of every post (an evergreen re-share)"
_SLOT_EPOCH = datetime(2000, 1, 3)  # a Monday at local midnight: weekly slots start on Mondays


def slot_subject(channel: Channel, settings: Settings, now: datetime) -> str:
    """The subject of the re-share slot holding NOW: ``reshare:2026-03-10T00:00`` (local time)."""
    return f"{SUBJECT_PREFIX}{_slot_start(channel, settings, now):%Y-%m-%dT%H:%M}"


def _slot_start(channel: Channel, settings: Settings, now: datetime) -> datetime:
    """The local wall-clock start (naive) of the re-share slot holding NOW."""
    every = channel.reshare.every
    local = now.astimezone(settings.site.tz).replace(tzinfo=None)
    return _SLOT_EPOCH + ((local - _SLOT_EPOCH) // every) * every


# A slot's end is a local wall-clock time: its UTC instant may move by a DST shift (an hour; 30
# minutes on Lord Howe). The quiet run stops this long before it, which covers any shift.
_DST_MARGIN = timedelta(hours=2)


def next_work_at(s: Session, settings: Settings, now: datetime) -> datetime | None:
    """When ``plan_reshares`` next has something to do (the quiet run, engine/quiet.py): NOW while
    a re-share channel's slot has no re-share yet (a candidate may come of age, the window may
    open: it is looked at every pass), else a margin before the soonest next slot; None without
    re-share channels."""
    soonest = None
    for name, channel in settings.enabled_channels().items():
        if channel.reshare is None or channel.kind not in SOCIAL_KINDS:
            continue
        subject = slot_subject(channel, settings, now)
        if not s.scalar(select(Delivery.id).where(Delivery.subject == subject, Delivery.channel == name)):
            return now
        local_end = _slot_start(channel, settings, now) + channel.reshare.every
        end = local_end.replace(tzinfo=settings.site.tz).astimezone(UTC) - _DST_MARGIN
        soonest = end if soonest is None else min(soonest, end)
    return soonest if soonest is None else max(soonest, now)


def plan_reshares(factory: sessionmaker[Session], settings: Settings, now: datetime) -> list[int]:
    """Create this slot's re-share on every channel that has one due; the new delivery ids."""
    created = []
    for name, channel in settings.enabled_channels().items():
        if channel.reshare is None or channel.kind not in SOCIAL_KINDS or not may_send_at(channel, settings, now):
            continue
        try:
            with transaction(factory) as s:
                did = _plan_slot(s, settings, name, channel, now)
        except Exception:  # one channel's trouble must not stop the others, nor the run
            log.exception("planning the re-share on %s failed", name)
            continue
        if did is not None:
            created.append(did)
    return created


def _plan_slot(s: Session, settings: Settings, name: str, channel: Channel, now: datetime) -> int | None:
    from syndicate.render import NotApplicable  # loaded when a channel has a slot to fill
    from syndicate.render.payloads import build_payload

    subject = slot_subject(channel, settings, now)
    if s.scalar(select(Delivery.id).where(Delivery.subject == subject, Delivery.channel == name)):
        return None  # this slot has its re-share (or another planner is making it)
    for post, data, last in _candidates(s, settings, name, channel, now):
        try:
            payload = build_payload(data, settings, name)
        except NotApplicable:
            continue
        except Exception:  # a broken template: that post is not re-shared, the others may be
            log.exception("rendering the re-share of post %s for %s failed", post.id, name)
            continue
        reason = HOLD_REASON if channel.hold else None
        state = "held" if reason else "planned"
        row = {"key": uuid.uuid4().hex, "subject": subject, "post_id": post.id, "channel": name,
               "kind": channel.kind, "provider": channel.provider, "state": state, "due_at": now,
               "payload": payload, "post_url": post.url, "rendered_hash": post.content_hash or None,
               "hold_reason": reason, "created_at": now, "updated_at": now}
        if not insert_ignore(s, Delivery, row, ["subject", "channel"]):
            return None  # another planner made this slot's re-share first
        did = s.scalar(select(Delivery.id).where(Delivery.key == row["key"]))
        s.add(Event(delivery_id=did, at=now, actor="planner", action="created", to_state=state,
                    detail=f"evergreen re-share of post {post.id} (last on this channel {last:%Y-%m-%d})"
                           + (f"; {reason}" if reason else "")))
        return did
    return None


def _candidates(s: Session, settings: Settings, name: str, channel: Channel, now: datetime):
    """(post, its data, its last delivery on the channel) for each post that may be re-shared,
    the longest unshared first."""
    from syndicate.render.safety import is_sensitive

    rules = channel.reshare
    last = func.max(Delivery.created_at)
    sent = func.sum(case((Delivery.state == "sent", 1), else_=0))
    rows = s.execute(select(Delivery.post_id, last.label("last"))
                     .where(Delivery.channel == name, Delivery.post_id.is_not(None))
                     .group_by(Delivery.post_id)
                     .having(sent > 0, last <= now - rules.repeat_after)
                     .order_by(last, Delivery.post_id)).all()
    withdrawn = set(s.scalars(select(Delivery.post_id).where(Delivery.state == "cancelled",
                                                              Delivery.hold_reason.like("withdrawn:%"))))
    for post_id, last_at in rows:
        if post_id in withdrawn:
            continue
        post = s.get(Post, post_id)
        if post is None or post.duplicate_of is not None:
            continue
        data = PostData.from_dict(post.data)
        if _published(post, data) > now - rules.min_age or is_sensitive(data, settings.safety):
            continue
        yield post, data, last_at


def _published(post: Post, data: PostData) -> datetime:
    return post.published_at or data.published or post.first_seen_at


def is_reshare(subject: str) -> bool:
    return subject.startswith(SUBJECT_PREFIX)


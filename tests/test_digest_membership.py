"""Digest membership: each post is in exactly one edition of a digest channel, whatever the
timing of poll commits and dispatchers, on SQLite and PostgreSQL (engine/digest.py).

A poll stamps ``first_seen_at`` with its start time but commits after fetch and parse; an
edition planned in between must leave the post to the next edition, not lose it. Two
dispatchers planning at once must never put a post in two editions."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from conftest import PG_ADMIN_URL
from sqlalchemy import MetaData, create_engine, insert, select, text
from test_digest import EDITION_1, EDITION_2, EDITION_3, add_post, editions
from test_poll import item, rss

from syndicate.engine import digest, poll
from syndicate.engine.digest import NO_POSTS, plan_digests
from syndicate.engine.poll import poll_feed
from syndicate.engine.runner import ledger
from syndicate.ledger.db import alembic_config, close_ledger, transaction
from syndicate.ledger.models import DigestItem, Post

WEEKLY = {"kind": "email", "mode": "digest", "digest": {"every": "week", "day": "tue", "at": "09:00"},
          "to": ["reader@example.org"]}


@pytest.fixture
def settings(make_settings, store_url):
    return make_settings(store_url=store_url, channels={"weekly": WEEKLY})


def items(settings) -> dict[int, int]:
    """post id -> the delivery id of the edition holding it (the unique constraint makes it one)."""
    with transaction(ledger(settings)) as s:
        return {i.post_id: i.delivery_id for i in s.scalars(select(DigestItem).where(DigestItem.channel == "weekly"))}


def assert_exactly_once(settings) -> None:
    """What each edition mails (its payload) is what the ledger says it holds, and no post twice."""
    held = items(settings)
    mailed: list[int] = []
    for edition in editions(settings):
        ids = edition.payload["edition"]["post_ids"]
        assert sorted(ids) == sorted(p for p, d in held.items() if d == edition.id), edition.subject
        mailed += ids
    assert len(mailed) == len(set(mailed))


def test_a_post_committed_after_its_edition_was_planned_goes_in_the_next_one(
        make_settings, store_url, tmp_path, monkeypatch):
    """The reviewer's scenario, with a real poll: it starts at 08:59:55 (first_seen_at), stalls
    in fetch + parse while the dispatcher plans the 09:00 edition, and commits at 09:00:05."""
    feed_file = tmp_path / "feed.xml"
    feed_file.write_bytes(rss([item(1)]))
    settings = make_settings(store_url=store_url, channels={"weekly": WEEKLY},
                             feeds=[{"name": "blog", "url": str(feed_file)}])
    factory = ledger(settings)
    poll_feed(factory, settings, settings.feeds[0], EDITION_1 - timedelta(days=1))  # first poll: recorded only
    plan_digests(factory, settings, EDITION_1 + timedelta(minutes=5))  # the series starts
    feed_file.write_bytes(rss([item(2), item(1)]))

    parsing, planned = threading.Event(), threading.Event()
    real_parse = poll.parse

    def slow_parse(*args, **kwargs):  # the poll is between its start and its commit
        parsing.set()
        assert planned.wait(10), "the edition was not planned"
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(poll, "parse", slow_parse)
    started = EDITION_2 - timedelta(seconds=5)  # 08:59:55 New York
    outcome = {}
    poller = threading.Thread(target=lambda: outcome.update(
        result=poll_feed(factory, settings, settings.feeds[0], started)))
    poller.start()
    try:
        assert parsing.wait(10)
        plan_digests(factory, settings, EDITION_2)  # 09:00:00: the post is not committed yet
    finally:
        planned.set()
        poller.join(10)
    assert outcome["result"].new == 1
    with transaction(factory) as s:
        post = s.scalar(select(Post).where(Post.title == "Post number 2"))
    assert post.first_seen_at == started < EDITION_2  # it belongs to W48's time span...

    w47, w48 = editions(settings)
    assert w48.subject == "digest:2026-W48" and w48.state == "skipped" and w48.hold_reason == NO_POSTS
    assert post.id not in items(settings)  # ...but W48 was planned without it

    plan_digests(factory, settings, EDITION_3 + timedelta(minutes=1))
    w49 = editions(settings)[2]
    assert w49.subject == "digest:2026-W49" and w49.state == "planned"
    assert w49.payload["edition"]["post_ids"] == [post.id]  # the next edition takes it
    assert "Post number 2" in w49.payload["html"]
    assert items(settings) == {post.id: w49.id}
    plan_digests(factory, settings, EDITION_3 + timedelta(days=7, minutes=1))
    assert editions(settings)[3].hold_reason == NO_POSTS  # and only that one
    assert_exactly_once(settings)


def _race(monkeypatch, settings, *nows: datetime) -> None:
    """Run one dispatcher per NOW in its own thread; each reads which posts are free, then all
    write at once (a barrier in the render step), as two real dispatchers may."""
    barrier = threading.Barrier(len(nows), timeout=10)
    first_call = threading.local()
    real_render = digest._render

    def render(*args, **kwargs):
        if not getattr(first_call, "done", False):
            first_call.done = True
            barrier.wait()
        return real_render(*args, **kwargs)

    threads = [threading.Thread(target=plan_digests, args=(ledger(settings), settings, now)) for now in nows]
    with monkeypatch.context() as patch:
        patch.setattr(digest, "_render", render)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert not barrier.broken


def test_two_dispatchers_planning_the_same_edition_create_it_once(settings, monkeypatch):
    plan_digests(ledger(settings), settings, EDITION_1 + timedelta(minutes=5))
    posts = {add_post(settings, EDITION_1 + timedelta(days=d), f"Day {d}") for d in (1, 2)}
    _race(monkeypatch, settings, EDITION_2 + timedelta(minutes=1), EDITION_2 + timedelta(minutes=1, seconds=1))
    _, w48 = editions(settings)
    assert w48.subject == "digest:2026-W48" and set(w48.payload["edition"]["post_ids"]) == posts
    assert items(settings) == dict.fromkeys(posts, w48.id)
    assert_exactly_once(settings)


def test_two_editions_racing_for_the_same_posts_share_them_out_once(settings, monkeypatch, caplog):
    """A dispatcher planning W48 late races one already planning W49: both read the same free
    posts; the second to record them finds them taken and plans its edition again."""
    plan_digests(ledger(settings), settings, EDITION_1 + timedelta(minutes=5))
    posts = {add_post(settings, EDITION_1 + timedelta(days=d), f"Day {d}") for d in (1, 2)}
    with caplog.at_level(logging.INFO, logger="syndicate.engine.digest"):
        _race(monkeypatch, settings, EDITION_2 + timedelta(minutes=1), EDITION_3 + timedelta(minutes=1))
    assert "is in another edition already" in caplog.text
    assert "failed" not in caplog.text
    assert set(items(settings)) == posts
    mailed = [e for e in editions(settings) if e.payload["edition"]["post_ids"]]
    assert len(mailed) == 1 and set(mailed[0].payload["edition"]["post_ids"]) == posts
    assert_exactly_once(settings)
    # The series goes on from the newest edition: nothing is planned twice or resent.
    plan_digests(ledger(settings), settings, EDITION_3 + timedelta(days=7, minutes=1))
    assert editions(settings)[-1].hold_reason == NO_POSTS
    assert_exactly_once(settings)


# ---------------------------------------------------------------- ledger revision 0004


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path):
    """An empty ledger database (not migrated), once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old-ledger.db'}"
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"syndicate_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        close_ledger(url)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_editions_planned_before_0004_keep_their_posts(fresh_url, make_settings):
    """Upgrading copies each old edition's posts (from its payload) into digest_items, and the
    series goes on where the last old edition ended: nothing mailed is mailed again."""
    from alembic import command

    command.upgrade(alembic_config(fresh_url), "0003")
    engine = create_engine(fresh_url)
    with engine.begin() as conn:  # the tables as 0003 left them (0004 only adds digest_items)
        # Read from the database, not today's models: later migrations add columns 0003 lacks.
        tables = MetaData()
        tables.reflect(conn, only=("feeds", "posts", "deliveries"))
        feeds, posts, deliveries = (tables.tables[name] for name in ("feeds", "posts", "deliveries"))
        feed = conn.execute(insert(feeds).values(name="wellness", url="f", polls=1)).inserted_primary_key[0]
        old = [conn.execute(insert(posts).values(
            feed_id=feed, identity=f"post-{d}", fingerprint=f"post-{d}", url=f"post-{d}", title=f"post-{d}",
            content_hash="", data={}, plan="send", first_seen_at=EDITION_1 + timedelta(days=d))).inserted_primary_key[0]
            for d in (1, 2)]
        edition = {"key": "2026-W48", "at": EDITION_2.isoformat(), "since": EDITION_1.isoformat(),
                   "until": EDITION_2.isoformat(), "post_ids": old[::-1]}
        w48 = conn.execute(insert(deliveries).values(
            key="k", subject="digest:2026-W48", channel="weekly", kind="email", provider="outbox",
            state="sent", due_at=EDITION_2, payload={"edition": edition}, attempts=1,
            created_at=EDITION_2, updated_at=EDITION_2)).inserted_primary_key[0]
    engine.dispose()

    settings = make_settings(store_url=fresh_url, channels={"weekly": WEEKLY})
    assert items(settings) == dict.fromkeys(old, w48)  # ledger() migrated it to the head revision
    late = add_post(settings, EDITION_2 + timedelta(days=1), "After the upgrade")
    plan_digests(ledger(settings), settings, EDITION_3 + timedelta(minutes=1))
    w49 = editions(settings)[1]
    assert w49.payload["edition"]["post_ids"] == [late]
    assert w49.payload["edition"]["series_start"] == EDITION_2.isoformat()
    assert_exactly_once(settings)


def test_the_payload_records_the_series_start(settings):
    plan_digests(ledger(settings), settings, EDITION_1 + timedelta(minutes=5))
    post = add_post(settings, EDITION_1 + timedelta(days=1), "Monday notes")
    plan_digests(ledger(settings), settings, EDITION_2 + timedelta(minutes=5))
    first, second = editions(settings)
    previous = (EDITION_1 - timedelta(days=7)).isoformat()
    assert first.payload["edition"]["series_start"] == previous == second.payload["edition"]["series_start"]
    assert second.payload["edition"]["since"] == EDITION_1.isoformat()
    assert items(settings) == {post: second.id}
    assert datetime.fromisoformat(second.payload["edition"]["at"]).tzinfo == UTC

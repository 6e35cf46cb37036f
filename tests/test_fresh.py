"""Content current at send time (engine/fresh.py), end to end on both ledgers: a real feed
server is the blog, real X and Mastodon fakes are the networks. A post taken down (410, 404)
is withdrawn and nothing reaches any network; a post edited on the blog after planning is
rendered again with the person's desk edit kept; each switch turns its check off."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fakes import start_fake
from feedserver import FeedServer
from sqlalchemy import select

from syndicate.engine import actions
from syndicate.engine.fresh import REFRESHED
from syndicate.engine.runner import ledger, run_once
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Event

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def _feed(base: str, title: str = "Five Grounding Skills", body: str = "Name five things you can see.") -> bytes:
    return f"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Wellness</title><link>{base}</link><description>d</description>
<item><title>{title}</title><link>{base}posts/grounding</link><guid>{base}posts/grounding</guid>
<pubDate>Tue, 24 Nov 2026 14:00:00 GMT</pubDate><description>{body}</description></item>
</channel></rss>""".encode()


@pytest.fixture
def blog():
    with FeedServer() as server:
        server.route("/feed.xml", _feed(server.url("/")))
        server.route("/posts/grounding", b"<html>the post</html>", content_type="text/html")
        yield server


@pytest.fixture
def networks(monkeypatch):
    with start_fake("x") as (_u1, x), start_fake("mastodon") as (_u2, masto):
        for fake in (x, masto):
            for key, value in fake.env().items():
                monkeypatch.setenv(key, value)
        yield x, masto


def _settings(make_settings, store_url, blog, networks, delay="2h", site_url=None, **sections):
    x, masto = networks
    return make_settings(
        store_url=store_url, site={"url": site_url or blog.url("/").rstrip("/")},
        feeds=[{"name": "blog", "url": blog.url("/feed.xml"), "backfill": 1}],
        channels={"x": {"kind": "x", "provider": "x", "delay": delay, "options": {**x.options(), "timeout": 3}},
                  "mastodon": {"kind": "mastodon", "provider": "mastodon", "delay": delay,
                               "options": {**masto.options(), "timeout": 3}}},
        **sections)


def _rows(factory) -> list[Delivery]:
    with transaction(factory) as s:
        return list(s.scalars(select(Delivery).order_by(Delivery.id)))


def _posted(networks) -> list[dict]:
    return [r for fake in networks for r in fake.requests if r["method"] == "POST"]


@pytest.mark.parametrize("status", [410, 404])
def test_a_post_taken_down_is_withdrawn_and_nothing_reaches_any_network(make_settings, store_url, blog,
                                                                        networks, status):
    settings = _settings(make_settings, store_url, blog, networks)
    factory = ledger(settings)
    run_once(settings, NOW)  # the post is seen and planned, due in two hours
    assert {r.state for r in _rows(factory)} == {"planned"}
    blog.route("/posts/grounding", b"gone", status=status, content_type="text/html")
    run_once(settings, NOW + timedelta(hours=3), poll=False)
    rows = _rows(factory)
    assert {r.state for r in rows} == {"cancelled"}
    for row in rows:
        assert f"answers {status}" in row.hold_reason and "not sent" in row.hold_reason
        assert row.attempts == 0 and row.provider_ref is None
    assert _posted(networks) == []
    # The post's own page, asked once per delivery (this server refuses HEAD with a 501: then one GET).
    assert blog.hits["/posts/grounding"] == len(rows)
    with transaction(factory) as s:
        events = list(s.scalars(select(Event).where(Event.to_state == "cancelled")))
    assert len(events) == 2 and all(e.from_state == "claimed" for e in events)


def test_withdraw_gone_off_sends_it_anyway(make_settings, store_url, blog, networks):
    settings = _settings(make_settings, store_url, blog, networks, content={"withdraw_gone": False})
    run_once(settings, NOW)
    blog.route("/posts/grounding", b"gone", status=410, content_type="text/html")
    run_once(settings, NOW + timedelta(hours=3), poll=False)
    assert {r.state for r in _rows(ledger(settings))} == {"sent"}
    assert blog.hits["/posts/grounding"] == 0
    assert len(_posted(networks)) == 2


def test_a_post_on_another_host_is_never_asked(make_settings, store_url, blog, networks):
    # The post's URL is not on the site's host: it is never asked.
    settings = _settings(make_settings, store_url, blog, networks, site_url="https://harborwellness.org")
    run_once(settings, NOW)
    blog.route("/posts/grounding", b"gone", status=410, content_type="text/html")
    run_once(settings, NOW + timedelta(hours=3), poll=False)
    assert {r.state for r in _rows(ledger(settings))} == {"sent"}
    assert blog.hits["/posts/grounding"] == 0


def test_an_edit_on_the_blog_is_rendered_again_and_a_desk_edit_is_kept(make_settings, store_url, blog, networks):
    settings = _settings(make_settings, store_url, blog, networks)
    factory = ledger(settings)
    run_once(settings, NOW)
    x_row, masto_row = _rows(factory)
    assert "Five Grounding Skills" in x_row.payload["text"]
    # A person rewrites the Mastodon post at the desk; X keeps the rendered text.
    actions.edit_text(factory, masto_row.id, "Our own words, kept. " + blog.url("/posts/grounding"), "desk:ana")
    # The blog fixes its title; the next poll records the edit.
    blog.route("/feed.xml", _feed(blog.url("/"), title="Six Grounding Skills"))
    run_once(settings, NOW + timedelta(minutes=30))
    run_once(settings, NOW + timedelta(hours=3), poll=False)
    x_row, masto_row = _rows(factory)
    assert (x_row.state, masto_row.state) == ("sent", "sent")
    x_post = next(r for r in networks[0].requests if r["method"] == "POST")
    assert "Six Grounding Skills" in x_post["json"]["text"]
    masto_post = next(r for r in networks[1].requests if r["method"] == "POST")
    assert masto_post["json"]["status"].startswith("Our own words, kept.")
    with transaction(factory) as s:
        refreshed = {e.delivery_id: json.loads(e.detail)
                     for e in s.scalars(select(Event).where(Event.action == REFRESHED))}
    assert "Five Grounding Skills" in refreshed[x_row.id]["before"]["text"]
    assert "Six Grounding Skills" in refreshed[x_row.id]["after"]["text"]
    assert refreshed[masto_row.id]["kept"] == ["text"]
    assert x_row.rendered_hash == refreshed[x_row.id]["to"] != refreshed[x_row.id]["from"]


def test_refresh_off_sends_the_copy_as_planned(make_settings, store_url, blog, networks):
    settings = _settings(make_settings, store_url, blog, networks, content={"refresh_at_send": False})
    run_once(settings, NOW)
    blog.route("/feed.xml", _feed(blog.url("/"), title="Six Grounding Skills"))
    run_once(settings, NOW + timedelta(minutes=30))
    run_once(settings, NOW + timedelta(hours=3), poll=False)
    x_post = next(r for r in networks[0].requests if r["method"] == "POST")
    assert "Five Grounding Skills" in x_post["json"]["text"]


def test_an_edit_that_makes_the_post_sensitive_holds_it_again_and_nothing_goes_out(make_settings, store_url,
                                                                                     blog, networks):
    """Planned as an ordinary post; the blog then adds a sensitive subject. The copy rendered at
    send time is judged as a new post would be: held for a person (safe messaging), not posted;
    once approved, the new copy goes out."""
    settings = _settings(make_settings, store_url, blog, networks)
    factory = ledger(settings)
    run_once(settings, NOW)
    assert {r.state for r in _rows(factory)} == {"planned"}
    blog.route("/feed.xml", _feed(blog.url("/"), body="Grounding skills, and where to turn when thinking about suicide."))
    run_once(settings, NOW + timedelta(minutes=30))
    run_once(settings, NOW + timedelta(hours=3), poll=False)
    rows = _rows(factory)
    assert {r.state for r in rows} == {"held"}
    assert all("changed on the blog" in r.hold_reason and "safe messaging" in r.hold_reason for r in rows)
    assert _posted(networks) == []
    for row in rows:
        actions.approve(factory, row.id, "desk:ana", now=NOW + timedelta(hours=3))
    run_once(settings, NOW + timedelta(hours=3), poll=False)
    assert {r.state for r in _rows(factory)} == {"sent"}
    assert len(_posted(networks)) == 2


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_an_edit_recorded_between_the_check_and_the_start_is_checked_again(make_settings, store_url, blog,
                                                                          networks, monkeypatch):
    # PostgreSQL's start requires the post's content hash the check went by (engine/send_record.py):
    # an edit a poll records while the page is being asked is not sent unchecked.
    from syndicate.engine import fresh

    settings = _settings(make_settings, store_url, blog, networks)
    factory = ledger(settings)
    run_once(settings, NOW)
    blog.route("/feed.xml", _feed(blog.url("/"), title="Six Grounding Skills"))
    asked = fresh.page_status
    polls = []

    def a_poll_lands_meanwhile(url, settings_, http=None):
        if not polls:  # the first check: a poll records the blog's edit while the page answers
            polls.append(run_once(settings, NOW + timedelta(minutes=30)))
        return asked(url, settings_, http)

    monkeypatch.setattr(fresh, "page_status", a_poll_lands_meanwhile)
    run_once(settings, NOW + timedelta(hours=3), poll=False)
    assert polls and {r.state for r in _rows(factory)} == {"sent"}
    for fake, field in zip(networks, ("text", "status"), strict=True):
        post = next(r for r in fake.requests if r["method"] == "POST")
        assert "Six Grounding Skills" in post["json"][field]

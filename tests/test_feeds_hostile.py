"""Hostile characters in a feed (security probe F6 and row 50): a lone surrogate or a Word
paste's vertical tab fails at most its own feed, never the whole run; and a post the ledger
refuses for any reason fails only its feed, recorded with the reason."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from feedserver import fixture
from sqlalchemy import select

from syndicate.engine import poll
from syndicate.engine.runner import ledger, run_once
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Feed, Post
from tests.conftest import REPO
from tests.test_poll import T0, item, rss

feed_server = fixture()

# The probe's reproduction, written as raw JSON text so the escape reaches the parser as is.
SURROGATE_FEED = ('{"version":"https://jsonfeed.org/version/1.1","title":"j \\ud800","home_page_url":'
                  '"https://harborwellness.example/","items":[{"id":"s1","url":"https://harborwellness.example/s1/",'
                  '"title":"lone surrogate \\ud800 here","content_html":"<p>x</p>"},{"id":"s2","url":'
                  '"https://harborwellness.example/s2/","title":"Word\\u000bpaste","content_html":'
                  '"<p>line one\\u000bline two\\u0001 end</p>"}]}')


def test_a_lone_surrogate_and_control_characters_do_not_stop_the_run(tmp_path, demo_feed_path):
    json.loads(SURROGATE_FEED)  # valid JSON: the escape is legal, only unencodable
    (tmp_path / "hostile.json").write_text(SURROGATE_FEED)
    config = tmp_path / "settings.toml"
    config.write_text(f'''
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
address = "120 Water Street, Portland, ME 04101"
[store]
url = "sqlite:///{tmp_path / 'ledger.db'}"
[outbox]
dir = "{tmp_path / 'outbox'}"
[[feeds]]
name = "hostile"
url = "{tmp_path / 'hostile.json'}"
backfill = 5
[[feeds]]
name = "wellness"
url = "{demo_feed_path}"
backfill = 2
[channels.newsletter]
kind = "email"
provider = "outbox"
from_address = "news@harborwellness.example"
to = ["reader@example.org"]
''')
    done = subprocess.run([sys.executable, "-m", "syndicate.cli", "--config", str(config), "run", "--once",
                           "--at", "2026-11-24T15:00:00Z"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-2000:]
    from syndicate.settings import load

    factory = ledger(load(config))
    with transaction(factory) as s:
        polls = dict(s.execute(select(Feed.name, Feed.polls)).all())
        titles = set(s.scalars(select(Post.title)))
        states = list(s.execute(select(Delivery.state, Delivery.last_error)))
    assert polls == {"hostile": 1, "wellness": 1}
    assert "lone surrogate \ufffd here" in titles and "Word paste" in titles
    assert states and all(state == "sent" for state, _ in states), states  # the \x0b post's email renders too


def test_a_post_the_ledger_refuses_fails_only_its_feed(make_settings, feed_server, monkeypatch):
    for n in range(3):
        feed_server.route(f"/{n}.xml", rss([item(n)]))
    settings = make_settings(feeds=[{"name": f"f{n}", "url": feed_server.url(f"/{n}.xml")} for n in range(3)])
    real = poll._record_changed

    def flaky(factory, feed_id, feed_cfg, outcome, now):
        if feed_cfg.name == "f1":
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return real(factory, feed_id, feed_cfg, outcome, now)

    monkeypatch.setattr(poll, "_record_changed", flaky)
    summary = run_once(settings, T0)
    by_name = {r.feed: r for r in summary.polls}
    assert by_name["f1"].status == "error" and "could not record" in by_name["f1"].error
    assert by_name["f0"].status == by_name["f2"].status == "ok"
    with transaction(ledger(settings)) as s:
        errors = dict(s.execute(select(Feed.name, Feed.last_error)).all())
    assert errors["f0"] is None and "UnicodeEncodeError" in errors["f1"]


def test_a_redirect_to_an_internal_address_on_another_origin_is_refused(feed_server):
    from feedserver import FeedServer

    from syndicate.feeds import FeedError, fetch

    with FeedServer() as internal:
        internal.route("/internal-admin", rss([item(1, title="INTERNAL-SECRET-DATA")]))
        target = internal.url("/internal-admin")
        feed_server.route("/feed-redirect-internal", status=302, location=target)
        with pytest.raises(FeedError, match="internal address"):
            fetch(feed_server.url("/feed-redirect-internal"))
        assert fetch(feed_server.url("/feed-redirect-internal"), internal_redirects=True).status == 200
    feed_server.route("/same-origin", status=301, location="/feed.xml")
    feed_server.route("/feed.xml", rss([item(2)]))
    assert fetch(feed_server.url("/same-origin")).status == 200  # a move within the same server is fine

"""Alerts to staff, per kind, through the outbox (and a webhook): grouped, one message per kind
per interval listing only what is new, and never a secret."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import text

from syndicate.engine.alerts import send_alerts
from syndicate.engine.heartbeat import beat
from syndicate.engine.poll import poll_feeds
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Feed, OAuthToken, utcnow
from syndicate.settings import SettingsError

SECRET_TOKEN = "tok-SECRET-8c1d"
HOUR = timedelta(hours=1)


def _settings(make_settings, store_url=None, feeds=None, **alerts):
    return make_settings(store_url=store_url, feeds=feeds, channels={
        "newsletter": {"kind": "email", "provider": "outbox", "to": ["reader@example.org"],
                       "from_address": "news@harborwellness.example"},
        "x": {"kind": "x", "provider": "outbox"}},
        web={"public_url": "https://harborwellness.example/news"},
        alerts={"to": ["staff@harborwellness.example"], "channel": "newsletter", **alerts})


def _delivery(factory, state: str, **values) -> int:
    with transaction(factory) as s:
        d = Delivery(key=uuid.uuid4().hex, subject=f"t:{uuid.uuid4().hex}", channel="x", kind="x",
                     provider="outbox", state=state, due_at=utcnow(), payload={"text": "hi"},
                     post_url="https://harborwellness.example/blog/a-post/", **values)
        s.add(d)
        s.flush()
        return d.id


def _mails(settings) -> dict[str, list]:
    folder = settings.outbox_dir / "newsletter" / "alerts"
    found: dict[str, list] = {}
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        found.setdefault(path.stem.rsplit("-", 1)[1], []).append(
            message_from_bytes(path.read_bytes(), policy=policy.default))
    return found


def _body(message) -> str:
    return message.get_body(("plain",)).get_content()


def test_one_alert_per_kind_grouped_and_each_thing_told_once(store_url, make_settings):
    settings = _settings(make_settings, store_url)
    factory = open_ledger(store_url)
    with transaction(factory) as s:
        for table in ("alerts_sent", "oauth_tokens", "heartbeats", "feeds"):
            s.execute(text(f"DELETE FROM {table}"))
    now = utcnow()
    held = [_delivery(factory, "held", hold_reason="sensitive topic: suicide") for _ in range(2)]
    failed = _delivery(factory, "failed", error_class="auth",
                       last_error=f"X: 401 Unauthorized (token {SECRET_TOKEN} refused)")
    unknown = _delivery(factory, "unknown", error_class="unknown", last_error="read timeout after the request")
    with transaction(factory) as s:
        s.add(Feed(name="blog", url="https://user:pw-SECRET@blog.example/feed", polls=3, failing=3,
                   last_error="https://user:pw-SECRET@blog.example/feed: HTTP 500", last_ok_at=now - 5 * HOUR))
        s.add(Feed(name="fine", url="https://ok.example/feed", polls=3, failing=1, last_error="HTTP 500"))
        s.add(OAuthToken(account="linkedin:app", access_token=SECRET_TOKEN, refresh_token=None,
                         expires_at=now + timedelta(days=3), updated_at=now))
        s.add(OAuthToken(account="x:refreshes", access_token="x", refresh_token="r",
                         expires_at=now + timedelta(hours=2), updated_at=now))  # refreshed on its own: quiet
    beat(factory, "dispatcher", now - 2 * HOUR, now - 2 * HOUR + timedelta(seconds=5))

    told = send_alerts(factory, settings, now)
    assert told == {"held": 2, "failed": 1, "unknown": 1, "feed": 1, "token": 1, "beat": 1}
    mails = _mails(settings)
    assert {k: len(v) for k, v in mails.items()} == {k: 1 for k in told}
    every = "".join(_body(m[0]) + str(m[0]) for m in mails.values())
    assert SECRET_TOKEN not in every and "pw-SECRET" not in every
    held_mail = mails["held"][0]
    assert held_mail["To"] == "staff@harborwellness.example"
    assert held_mail["Subject"] == "[Harbor Wellness Counseling] 2 waiting for approval"
    assert all(f"delivery {i} on x" in _body(held_mail) for i in held)
    assert "https://harborwellness.example/news/desk/delivery/" in _body(held_mail)
    assert f"delivery {failed} on x" in _body(mails["failed"][0])
    assert "credentials" in _body(mails["failed"][0]) or "token" in _body(mails["failed"][0]).lower()
    assert f"delivery {unknown} on x" in _body(mails["unknown"][0])
    assert "feed blog: 3 polls in a row" in _body(mails["feed"][0]) and "fine" not in _body(mails["feed"][0])
    assert "a linkedin token" in _body(mails["token"][0]) and "x token" not in _body(mails["token"][0])
    assert "Celery dispatcher" in _body(mails["beat"][0])

    # Within the interval nothing more goes out, even with something new.
    third = _delivery(factory, "held", hold_reason="flood")
    assert send_alerts(factory, settings, now + timedelta(minutes=30)) == {}
    # After it, one message per kind with only what is new.
    assert send_alerts(factory, settings, now + HOUR + timedelta(minutes=1)) == {"held": 1}
    mails = _mails(settings)
    assert len(mails["held"]) == 2 and sum(len(v) for v in mails.values()) == 7
    newest = _body(mails["held"][1])
    assert f"delivery {third} on x" in newest and f"delivery {held[0]} on x" not in newest
    # Nothing new: nothing sent, and the next new thing may be told at once.
    assert send_alerts(factory, settings, now + 3 * HOUR) == {}
    _delivery(factory, "failed", error_class="permanent", last_error="400 duplicate")
    assert send_alerts(factory, settings, now + 3 * HOUR + timedelta(minutes=1)) == {"failed": 1}


def test_a_feed_failing_polls_in_a_row_counts_and_resets(make_settings, tmp_path):
    broken = tmp_path / "missing.xml"
    settings = _settings(make_settings, feeds=[{"name": "blog", "url": str(broken)}], feed_failures=2,
                         kinds=["feed"])
    factory = open_ledger(settings.store_url)
    for _ in range(2):
        poll_feeds(factory, settings, settings.feeds, utcnow())
    with transaction(factory) as s:
        assert s.query(Feed).one().failing == 2
    assert send_alerts(factory, settings) == {"feed": 1}
    broken.write_text('<rss version="2.0"><channel><title>t</title></channel></rss>')
    poll_feeds(factory, settings, settings.feeds, utcnow())
    with transaction(factory) as s:
        assert s.query(Feed).one().failing == 0


def test_the_webhook_gets_json_and_the_url_stays_secret(make_settings, monkeypatch):
    got: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("ALERT_HOOK", f"http://127.0.0.1:{server.server_port}/hook/SECRET-PATH")
        settings = make_settings(web={"public_url": "https://h.example"},
                                 alerts={"webhook_url_env": "ALERT_HOOK", "kinds": ["held"]})
        factory = open_ledger(settings.store_url)
        _delivery(factory, "held", hold_reason="a flood")
        assert send_alerts(factory, settings) == {"held": 1}
        assert got and got[0]["kind"] == "held" and got[0]["count"] == 1
        assert got[0]["items"][0]["link"].startswith("https://h.example/desk/")
        # An unreachable webhook: nothing is remembered, so it is told again next time.
        monkeypatch.setenv("ALERT_HOOK", "http://127.0.0.1:9/hook/SECRET-PATH")
        _delivery(factory, "held", hold_reason="another")
        assert send_alerts(factory, settings, utcnow() + 2 * HOUR) == {}
        monkeypatch.setenv("ALERT_HOOK", f"http://127.0.0.1:{server.server_port}/hook/SECRET-PATH")
        assert send_alerts(factory, settings, utcnow() + 2 * HOUR + timedelta(seconds=1)) == {"held": 1}
    finally:
        server.shutdown()


def test_alerts_settings_name_an_email_channel(make_settings):
    with pytest.raises(SettingsError, match="alerts.channel"):
        make_settings(alerts={"to": ["staff@example.org"]})
    with pytest.raises(SettingsError, match="not an email channel"):
        make_settings(alerts={"to": ["staff@example.org"], "channel": "x"})

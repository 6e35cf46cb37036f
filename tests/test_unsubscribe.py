"""One-click unsubscribe (RFC 8058): POST suppresses at once, GET only shows a page, a forged
token is a 400; through Flask's test client and through a real `syndicate serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from test_smtp_support import PUBLIC_URL, SECRET, SmtpServer, free_port, smtp_channel, wait_for

from syndicate.audience import subscribers
from syndicate.engine.manual import send_post_now
from syndicate.engine.runner import ledger, run_once
from syndicate.ledger.models import Post
from syndicate.web import create_app
from tests.conftest import REPO

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)


@pytest.fixture
def settings(make_settings):
    return make_settings(web={"public_url": PUBLIC_URL})


@pytest.fixture
def client(settings):
    return create_app(settings).test_client()


def _subscribe(settings, *addresses):
    subscribers.import_rows(ledger(settings), settings,
                            [subscribers.Row(i, a) for i, a in enumerate(addresses)], source="test")


def test_get_shows_a_page_and_changes_nothing(settings, client):
    _subscribe(settings, "ana@example.org")
    token = subscribers.unsubscribe_token(settings, "ana@example.org")
    for _ in range(3):  # link scanners prefetch, sometimes more than once
        response = client.get(f"/unsubscribe/{token}")
        assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "ana@example.org" in page and '<form method="post">' in page and "Unsubscribe</button>" in page
    assert not subscribers.is_suppressed(ledger(settings), "ana@example.org")
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_one_click_post_suppresses_at_once(settings, client):
    _subscribe(settings, "ana@example.org", "ben@example.org")
    token = subscribers.unsubscribe_token(settings, "ana@example.org")
    response = client.post(f"/unsubscribe/{token}", data=ONE_CLICK)  # no login, no CSRF token
    assert response.status_code == 200 and "You are unsubscribed" in response.get_data(as_text=True)
    assert subscribers.is_suppressed(ledger(settings), "ana@example.org")
    with ledger(settings)() as s:
        assert subscribers.active_recipients(s) == ["ben@example.org"]
    assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 200  # again: harmless
    assert "already unsubscribed" in client.get(f"/unsubscribe/{token}").get_data(as_text=True)


def test_query_style_token_works_too(settings, client):
    token = subscribers.unsubscribe_token(settings, "cleo@example.org")
    assert client.post(f"/unsubscribe?u={token}", data=ONE_CLICK).status_code == 200
    assert subscribers.is_suppressed(ledger(settings), "cleo@example.org")


@pytest.mark.parametrize("token", ["nonsense", "", "eyJhbGciOiJub25lIn0.e30.", "{token}"])
def test_bad_or_forged_tokens_are_400(settings, client, token):
    for method in (client.get, client.post):
        response = method(f"/unsubscribe/{token}" if token else "/unsubscribe", data=ONE_CLICK)
        assert response.status_code == 400
        assert "This link does not work" in response.get_data(as_text=True)


def test_a_token_signed_with_another_key_is_refused(settings, client, monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", "some-other-key-" + "Zq8wR3tY6uI9oP2aS5dF7gH0")
    foreign = subscribers.unsubscribe_token(settings, "ana@example.org")
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)
    assert client.post(f"/unsubscribe/{foreign}", data=ONE_CLICK).status_code == 400
    assert not subscribers.is_suppressed(ledger(settings), "ana@example.org")


def test_the_link_in_a_received_email_unsubscribes_and_the_next_send_skips_them(make_settings, demo_feed_path):
    """End to end: a real message's List-Unsubscribe URL, POSTed as a mail client would."""
    with SmtpServer() as server:
        settings = make_settings(feeds=[{"name": "wellness", "url": str(demo_feed_path), "backfill": 2}],
                                 channels={"news": smtp_channel(server.port)}, web={"public_url": PUBLIC_URL})
        _subscribe(settings, "ana@example.org", "ben@example.org")
        run_once(settings, datetime(2026, 11, 24, 15, 0, tzinfo=UTC))
        first_post = server.handler.counts()
        assert first_post == {"ana@example.org": 2, "ben@example.org": 2}  # two posts, one each
        header = server.handler.to("ben@example.org")[0].message["List-Unsubscribe"]
        url = next(part.strip("<> ") for part in header.split(",") if "https://" in part)
        path = url.removeprefix(PUBLIC_URL)
        assert create_app(settings).test_client().post(path, data=ONE_CLICK).status_code == 200
        # A re-import does not bring ben back, and the next post (sent by hand) skips him.
        subscribers.import_rows(ledger(settings), settings, [subscribers.Row(1, "ben@example.org")], "re-import")
        with ledger(settings)() as s:
            later = s.scalars(select(Post).where(Post.plan == "ignore").order_by(Post.id)).first()
        results = send_post_now(ledger(settings), settings, later, ["news"], actor="test")
        assert [r.state for r in results] == ["sent"]
    assert server.handler.counts() == {"ana@example.org": 3, "ben@example.org": 2}


def test_syndicate_serve_answers_real_http(tmp_path):
    port = free_port()
    config = tmp_path / "settings.toml"
    config.write_text(f'''
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
[store]
url = "sqlite:///{tmp_path / 'ledger.db'}"
''')
    env = {**os.environ, "SYNDICATE_SECRET": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli", "--config", str(config), "serve", "--port",
                             str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(f"{base}/healthz"), 30, "syndicate serve to answer")
        from syndicate.settings import load

        settings = load(config)
        token = subscribers.unsubscribe_token(settings, "dana@example.org")
        with urllib.request.urlopen(f"{base}/unsubscribe/{token}", timeout=5) as response:
            assert response.status == 200 and b"Unsubscribe</button>" in response.read()
        assert not subscribers.is_suppressed(ledger(settings), "dana@example.org")
        request = urllib.request.Request(f"{base}/unsubscribe/{token}", data=b"List-Unsubscribe=One-Click",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        assert subscribers.is_suppressed(ledger(settings), "dana@example.org")
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(urllib.request.Request(f"{base}/unsubscribe/forged", data=b""), timeout=5)
        assert bad.value.code == 400
    finally:
        proc.terminate()
        proc.wait(10)


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def test_serve_binds_to_localhost_by_default():
    from syndicate.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1"

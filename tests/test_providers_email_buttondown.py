"""Buttondown: one email per delivery, {{ unsubscribe_url }} in the footer, never sent twice."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from fakes import start_fake
from test_providers_email_support import build_email, email_job, email_settings, rendered_payload

from syndicate.providers.base import AuthExpired, OutcomeUnknown, Permanent, RateLimited, Retryable


@pytest.fixture
def bd():
    with start_fake("buttondown") as (_base, fake):
        yield fake


def _setup(make_settings, monkeypatch, fake, **extra):
    settings = email_settings(make_settings, monkeypatch, fake, "buttondown", **extra)
    return settings, build_email(settings, "buttondown"), rendered_payload(settings)


def test_creates_an_email_about_to_send(make_settings, monkeypatch, bd):
    _, provider, payload = _setup(make_settings, monkeypatch, bd)
    result = provider.send(email_job(payload))
    call, = bd.calls("POST", r"^/v1/emails$")
    assert call["headers"]["authorization"] == f"Token {bd.API_KEY}"
    body = call["json"]
    assert body["subject"] == payload["subject"] and body["status"] == "about_to_send"
    assert body["description"] == payload["preheader"]
    assert body["metadata"] == {"syndicate_delivery": "delivery-42-3f9a"}
    assert body["body"].startswith("<!-- buttondown-editor-mode: fancy -->\n<!doctype html>")
    assert 'href="{{ unsubscribe_url }}"' in body["body"] and "/unsubscribe/" not in body["body"]
    (email,) = bd.emails
    assert result.ref == email["id"] and result.url == email["absolute_url"]


def test_scheduled_with_publish_date(make_settings, monkeypatch, bd):
    _, provider, payload = _setup(make_settings, monkeypatch, bd, schedule_after=90)
    provider.send(email_job(payload))
    (email,) = bd.emails
    assert email["status"] == "scheduled"
    at = datetime.fromisoformat(email["publish_date"].replace("Z", "+00:00"))
    assert 89 * 60 <= (at - datetime.now(UTC)).total_seconds() <= 90 * 60


def test_timeout_then_retry_finds_the_email(make_settings, monkeypatch, bd):
    _, provider, payload = _setup(make_settings, monkeypatch, bd)
    provider.timeout = (1, 0.5)
    bd.fail_next("stall", delay=1, path=r"^/v1/emails$", method="POST")
    with pytest.raises(OutcomeUnknown):
        provider.send(email_job(payload))
    deadline = time.monotonic() + 5
    while not bd.emails and time.monotonic() < deadline:
        time.sleep(0.05)
    result = provider.send(email_job(payload))
    assert len(bd.emails) == 1 and result.ref == bd.emails[0]["id"]
    assert len(bd.calls("POST", r"^/v1/emails$")) == 1


def test_duplicate_subject_from_another_delivery_is_permanent(make_settings, monkeypatch, bd):
    _, provider, payload = _setup(make_settings, monkeypatch, bd)
    provider.send(email_job(payload, key="delivery-1"))
    with pytest.raises(Permanent, match="duplicate"):
        provider.send(email_job(payload, key="delivery-2"))
    assert len(bd.emails) == 1


def test_validation_error_lists_the_fields(make_settings, monkeypatch, bd):
    _, provider, payload = _setup(make_settings, monkeypatch, bd, email_type="premium")
    provider.send(email_job(payload))  # a known field is fine
    bd.reset()
    with pytest.raises(Permanent, match="subject provided is invalid"):
        provider.send(email_job({**payload, "subject": " "}))


@pytest.mark.parametrize("kind, error, text", [
    ("429", RateLimited, "throttled"),
    ("401", AuthExpired, "Invalid token"),
    ("403", AuthExpired, "Buttondown 403"),
    ("400", Permanent, "body provided is invalid"),
    ("500", Retryable, "Buttondown 500"),
])
def test_error_mapping(make_settings, monkeypatch, bd, kind, error, text):
    _, provider, payload = _setup(make_settings, monkeypatch, bd)
    bd.fail_next(kind, retry_after=120, path=r"^/v1/emails$", method="POST")
    with pytest.raises(error, match=text) as err:
        provider.send(email_job(payload))
    if kind == "429":
        assert 100 < (err.value.reset_at - datetime.now(UTC)).total_seconds() <= 121
    assert bd.API_KEY not in str(err.value) and not bd.emails


def test_check(make_settings, monkeypatch, bd):
    _, provider, _ = _setup(make_settings, monkeypatch, bd)
    assert provider.check() == f"Buttondown newsletter 'Harbor Wellness Notes' ({bd.base_url})"
    bd.revoke()
    with pytest.raises(AuthExpired, match="Invalid token"):
        provider.check()

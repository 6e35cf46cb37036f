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
    # Buttondown documents no preferences page: our link is left out, not sent with "{token}".
    assert "/preferences/" not in body["body"] and "Manage your preferences" not in body["body"]
    assert 'href="{{ unsubscribe_url }}">Unsubscribe</a></p>' in body["body"]
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
    """A lost answer is OutcomeUnknown; the engine's lookup before the retry finds the email."""
    _, provider, payload = _setup(make_settings, monkeypatch, bd)
    provider.timeout = (1, 0.5)
    bd.fail_next("stall", delay=1, path=r"^/v1/emails$", method="POST")
    with pytest.raises(OutcomeUnknown):
        provider.send(email_job(payload))
    deadline = time.monotonic() + 5
    while not bd.emails and time.monotonic() < deadline:
        time.sleep(0.05)
    result = provider.lookup(email_job(payload))
    assert len(bd.emails) == 1 and result.ref == bd.emails[0]["id"]
    assert len(bd.calls("POST", r"^/v1/emails$")) == 1
    lookup, = bd.calls("GET", r"^/v1/emails$")
    assert lookup["query"]["ordering"] == "-creation_date" and lookup["query"]["creation_date__start"]


def test_create_headers_confirm_live_sending_and_carry_an_idempotency_key(make_settings, monkeypatch, bd):
    """BD1: from API version 2026-04-01 the first about_to_send per key needs
    X-Buttondown-Live-Dangerously; BD2: the create carries X-Idempotency-Key."""
    _, provider, payload = _setup(make_settings, monkeypatch, bd)
    provider.send(email_job(payload))
    call, = bd.calls("POST", r"^/v1/emails$")
    assert call["headers"]["x-buttondown-live-dangerously"] == "true"
    assert call["headers"]["x-api-version"] == "2026-04-01"
    assert call["headers"]["x-idempotency-key"] == "syndicate-delivery-42-3f9a"
    assert bd.confirmed_keys == {bd.API_KEY}


def test_the_fake_refuses_about_to_send_without_confirmation(make_settings, monkeypatch, bd):
    """The strict fake answers as enums.json says; the adapter maps it to AuthExpired with a hint."""
    import requests

    answer = requests.post(f"{bd.base_url}/v1/emails", json={"subject": "Hi", "body": "x"},
                           headers={"Authorization": f"Token {bd.API_KEY}"}, timeout=5)
    assert answer.status_code == 400 and answer.json()["code"] == "sending_requires_confirmation"
    _, provider, _ = _setup(make_settings, monkeypatch, bd)
    error = provider.error_for(answer, what="creating the email")
    assert isinstance(error, AuthExpired) and "X-Buttondown-Live-Dangerously" in str(error)


def test_idempotency_key_replays_the_first_answer(make_settings, monkeypatch, bd):
    _, provider, payload = _setup(make_settings, monkeypatch, bd)
    first = provider.send(email_job(payload))
    again = provider.send(email_job(payload))  # a blind resend: Buttondown answers the first email
    assert first.ref == again.ref and len(bd.emails) == 1


def test_lookup_reads_newest_first_past_a_long_archive(make_settings, monkeypatch, bd):
    """BD2: with 150 older emails, page 1 in the default order holds none of this week's."""
    bd.seed_archive(150)
    _, provider, payload = _setup(make_settings, monkeypatch, bd)
    sent = provider.send(email_job(payload))
    import requests

    oldest_first = requests.get(f"{bd.base_url}/v1/emails", headers={"Authorization": f"Token {bd.API_KEY}"},
                                timeout=5).json()["results"]
    assert sent.ref not in [e["id"] for e in oldest_first]  # what the old lookup read
    found = provider.lookup(email_job(payload))
    assert found is not None and found.ref == sent.ref
    assert provider.lookup(email_job(payload, key="delivery-other")) is None


def test_duplicate_subject_from_another_delivery_is_permanent(make_settings, monkeypatch, bd):
    _, provider, payload = _setup(make_settings, monkeypatch, bd)
    provider.send(email_job(payload, key="delivery-1"))
    with pytest.raises(Permanent, match="duplicate"):
        provider.send(email_job(payload, key="delivery-2"))
    assert len(bd.emails) == 1


def test_validation_error_lists_the_fields(make_settings, monkeypatch, bd):
    _, provider, payload = _setup(make_settings, monkeypatch, bd, email_type="premium", archival_mode="disabled")
    provider.send(email_job(payload))  # known fields and values are fine
    bd.reset()
    with pytest.raises(Permanent, match="subject provided is invalid"):
        provider.send(email_job({**payload, "subject": " "}))
    _, provider, payload = _setup(make_settings, monkeypatch, bd, archival_mode="everyone")
    with pytest.raises(Permanent, match="Buttondown 422: body.archival_mode: 'everyone' is not one of"):
        provider.send(email_job(payload, key="delivery-43"))


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

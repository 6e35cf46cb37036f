"""Mailchimp: a regular campaign per delivery, *|UNSUB|* in the footer, never two campaigns."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from fakes import start_fake
from test_providers_email_support import build_email, email_job, email_settings, rendered_payload

from syndicate.providers.base import AuthExpired, OutcomeUnknown, Permanent, RateLimited, Retryable
from syndicate.providers.campaign import send_time


@pytest.fixture
def chimp():
    with start_fake("mailchimp") as (_base, fake):
        yield fake


def _setup(make_settings, monkeypatch, fake, **extra):
    settings = email_settings(make_settings, monkeypatch, fake, "mailchimp", **extra)
    return settings, build_email(settings, "mailchimp"), rendered_payload(settings)


def test_creates_sets_content_and_sends(make_settings, monkeypatch, chimp):
    settings, provider, payload = _setup(make_settings, monkeypatch, chimp)
    result = provider.send(email_job(payload))

    create, = chimp.calls("POST", r"^/3\.0/campaigns$")
    body = create["json"]
    assert body["type"] == "regular" and body["recipients"] == {"list_id": chimp.AUDIENCE_ID}
    assert body["settings"]["subject_line"] == payload["subject"]
    assert body["settings"]["preview_text"] == payload["preheader"]
    assert body["settings"]["title"] == "delivery-42-3f9a"
    assert body["settings"]["from_name"] == "Harbor Wellness"
    assert body["settings"]["reply_to"] == "hello@harborwellness.example"
    assert body["tracking"] == {"opens": False, "html_clicks": False, "text_clicks": False}
    assert create["headers"]["authorization"].startswith("Basic ")

    campaign = chimp.campaigns[result.ref]
    html, text = campaign["content"]["html"], campaign["content"]["plain_text"]
    # Our unsubscribe link (with its {token}) became Mailchimp's merge tag, in HTML and text.
    assert '<a href="*|UNSUB|*"' in html and "*|UNSUB|*" in text
    assert "/unsubscribe/" not in html and "{token}" not in html + text
    # Our preferences link became Mailchimp's own "update profile" page.
    assert '<a href="*|UPDATE_PROFILE|*">Manage your preferences</a>' in html
    assert "Manage your preferences: *|UPDATE_PROFILE|*" in text and "/preferences/" not in html + text
    assert campaign["status"] == "sending" and chimp.sends == [result.ref]
    assert result.url == campaign["long_archive_url"] and result.details["status"] == "sending"
    assert provider.looks_up is True and provider.deduplicates is False
    assert [c["path"].rsplit("/", 1)[-1] for c in chimp.requests] == ["campaigns", "content", "send-checklist", "send"]


def test_schedule_after_rounds_up_to_the_quarter_hour(make_settings, monkeypatch, chimp):
    _, provider, payload = _setup(make_settings, monkeypatch, chimp, schedule_after=20)
    result = provider.send(email_job(payload))
    call, = chimp.calls("POST", r"/actions/schedule$")
    at = datetime.fromisoformat(call["json"]["schedule_time"].replace("Z", "+00:00"))
    assert at.minute % 15 == 0 and at.second == 0
    assert 20 * 60 <= (at - datetime.now(UTC)).total_seconds() <= 36 * 60
    assert chimp.campaigns[result.ref]["status"] == "schedule" and not chimp.calls("POST", r"/actions/send$")


def test_send_time_rounding():
    now = datetime(2024, 3, 4, 9, 1, 30, tzinfo=UTC)
    assert send_time({"schedule_after": 0}, now) is None
    assert send_time({"schedule_after": 14}, now, quantum_minutes=15) == datetime(2024, 3, 4, 9, 30, tzinfo=UTC)
    assert send_time({"schedule_after": 59}, now, quantum_minutes=15) == datetime(2024, 3, 4, 10, 15, tzinfo=UTC)


def test_timeout_on_send_then_retry_does_not_send_twice(make_settings, monkeypatch, chimp):
    """The send action times out (Mailchimp did send); the retry finds the campaign by title."""
    _, provider, payload = _setup(make_settings, monkeypatch, chimp)
    provider.timeout = (1, 0.5)
    chimp.fail_next("stall", delay=1, path=r"/actions/send$")
    with pytest.raises(OutcomeUnknown):
        provider.send(email_job(payload))
    deadline = time.monotonic() + 5
    while not chimp.sends and time.monotonic() < deadline:
        time.sleep(0.05)
    result = provider.lookup(email_job(payload, attempt=2))  # the engine asks before any retry
    assert result.details["found_by"] == "lookup"
    assert len(chimp.campaigns) == 1 and chimp.sends == [result.ref]
    assert len(chimp.calls("POST", r"^/3\.0/campaigns$")) == 1


def test_timeout_on_create_then_retry_resumes_the_draft(make_settings, monkeypatch, chimp):
    """The create times out but Mailchimp made the campaign: the retry fills and sends that one."""
    _, provider, payload = _setup(make_settings, monkeypatch, chimp)
    provider.timeout = (1, 0.5)
    chimp.fail_next("stall", delay=1, path=r"^/3\.0/campaigns$", method="POST")
    with pytest.raises(OutcomeUnknown):
        provider.send(email_job(payload))
    deadline = time.monotonic() + 5
    while not chimp.campaigns and time.monotonic() < deadline:
        time.sleep(0.05)
    (draft,) = chimp.campaigns
    assert provider.lookup(email_job(payload, attempt=2)) is None  # only a draft: send resumes it
    result = provider.send(email_job(payload, attempt=2))
    assert result.ref == draft and len(chimp.campaigns) == 1 and chimp.sends == [draft]


def test_another_delivery_makes_its_own_campaign(make_settings, monkeypatch, chimp):
    _, provider, payload = _setup(make_settings, monkeypatch, chimp)
    first = provider.send(email_job(payload, key="delivery-1"))
    second = provider.send(email_job(payload, key="delivery-2"))
    assert first.ref != second.ref and len(chimp.sends) == 2
    chimp.finish()
    assert provider.lookup(email_job(payload, key="delivery-1", attempt=2)).ref == first.ref  # sent: nothing to do
    assert len(chimp.sends) == 2


def test_data_center_from_the_key(make_settings, monkeypatch, chimp):
    options = {k: v for k, v in chimp.options().items() if k != "api_base"}
    _, provider, _ = _setup(make_settings, monkeypatch, chimp, options=options)
    assert provider.api_base == "https://us21.api.mailchimp.com"
    monkeypatch.setenv("SYN_FAKE_MAILCHIMP_KEY", "nodatacenter")
    with pytest.raises(Permanent, match="data-center suffix"):
        _ = provider.api_base


@pytest.mark.parametrize("kind, error, text", [
    ("429", RateLimited, "10 simultaneous connections"),
    ("401", AuthExpired, "API key may be invalid"),
    ("403", Permanent, "Mailchimp 403"),  # MC3: plan and compliance refusals are 403 too
    ("400", Permanent, "reply_to"),
    ("500", Retryable, "Mailchimp 500"),
])
def test_error_mapping(make_settings, monkeypatch, chimp, kind, error, text):
    _, provider, payload = _setup(make_settings, monkeypatch, chimp)
    chimp.fail_next(kind, path=r"^/3\.0/campaigns$", method="POST")
    with pytest.raises(error, match=text) as err:
        provider.send(email_job(payload))
    assert chimp.API_KEY not in str(err.value)
    assert not chimp.sends


def test_missing_audience_or_key(make_settings, monkeypatch, chimp):
    options = {k: v for k, v in chimp.options().items() if k != "audience_id"}
    _, provider, payload = _setup(make_settings, monkeypatch, chimp, options=options)
    with pytest.raises(Permanent, match="option audience_id is not set"):
        provider.send(email_job(payload))
    monkeypatch.delenv("SYN_FAKE_MAILCHIMP_KEY")
    _, provider, payload = _setup(make_settings, monkeypatch, chimp)
    monkeypatch.delenv("SYN_FAKE_MAILCHIMP_KEY")
    with pytest.raises(AuthExpired, match="SYN_FAKE_MAILCHIMP_KEY"):
        provider.send(email_job(payload))


def test_check(make_settings, monkeypatch, chimp):
    _, provider, _ = _setup(make_settings, monkeypatch, chimp)
    line = provider.check()
    assert "Everything's Chimpy!" in line and "'Harbor Wellness readers' (1250 members)" in line
    assert chimp.calls("GET", r"^/3\.0/ping$")
    chimp.revoke()
    with pytest.raises(AuthExpired):
        provider.check()


def test_a_long_subject_is_cut_to_150_characters(make_settings, monkeypatch, chimp):
    """MC1: Mailchimp refuses a subject line over 150 characters; the adapter cuts it at a word."""
    _, provider, payload = _setup(make_settings, monkeypatch, chimp)
    long_subject = "Breathing exercises for a calmer morning, " * 8 + "🌿" * 10
    result = provider.send(email_job({**payload, "subject": long_subject}))
    subject = chimp.campaigns[result.ref]["settings"]["subject_line"]
    assert len(subject) <= 150 and subject.endswith("…") and long_subject.startswith(subject[:-1].rstrip())


def test_not_ready_campaign_fails_with_the_checklist_words(make_settings, monkeypatch, chimp):
    """MC2: without an unsubscribe link (a custom template) the checklist says why, before sending."""
    _, provider, payload = _setup(make_settings, monkeypatch, chimp)
    bare = {**payload, "html": payload["html"].replace(payload["unsubscribe_https"], "https://example.org/x"),
            "unsubscribe_https": None}
    with pytest.raises(Permanent, match="not ready to send: Unsubscribe link: .*UNSUB"):
        provider.send(email_job(bare))
    assert not chimp.sends and not chimp.calls("POST", r"/actions/send$")

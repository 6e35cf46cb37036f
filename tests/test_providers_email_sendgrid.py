"""SendGrid: Mail Send with one personalization per recipient, and Single Sends as campaigns."""

from __future__ import annotations

import time

import pytest
from fakes import start_fake
from test_providers_email_support import (
    build_email,
    direct_setup,
    email_job,
    email_settings,
    ledger_delivery,
    recipients,
    rendered_payload,
    token_address,
)

from syndicate.providers.base import AuthExpired, OutcomeUnknown, Permanent, RateLimited


@pytest.fixture
def sg():
    with start_fake("sendgrid") as (_base, fake):
        yield fake


# -- Mail Send (direct) ------------------------------------------------------------------------

def _direct(make_settings, monkeypatch, fake, emails, **extra):
    return direct_setup(make_settings, monkeypatch, fake, "sendgrid", emails, **extra)


def test_mail_send_personalizations(make_settings, monkeypatch, sg):
    emails = ["ana@example.org", "ben@example.org", "cleo@example.org"]
    settings, provider, payload = _direct(make_settings, monkeypatch, sg, emails)
    result = provider.send(email_job(payload))

    call, = sg.calls("POST", r"^/v3/mail/send$")
    body = call["json"]
    assert call["headers"]["authorization"] == f"Bearer {sg.API_KEY}"
    assert [p["to"] for p in body["personalizations"]] == [[{"email": e}] for e in emails]
    assert body["from"] == {"email": "news@harborwellness.example", "name": "Harbor Wellness"}
    assert body["reply_to"] == {"email": "hello@harborwellness.example"}
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["tracking_settings"]["open_tracking"] == {"enable": False}
    assert body["tracking_settings"]["click_tracking"] == {"enable": False, "enable_text": False}
    assert "%syndicate_unsubscribe_token%" in body["content"][1]["value"]

    assert [m["to"] for m in sg.delivered] == emails
    for message in sg.delivered:
        link = message["headers"]["List-Unsubscribe"].split(",")[0].strip("<> ")
        assert link.startswith("https://harborwellness.example/unsubscribe/")
        assert token_address(settings, link) == message["to"]
        assert message["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert f'href="{link}"' in message["html"] and link in message["text"]
        assert message["custom_args"] == {"syndicate_delivery": "delivery-42-3f9a"}
    assert recipients(settings) == dict.fromkeys(emails, "sent")
    assert result.details["sent"] == 3 and result.details["batches"][0]["x_message_id"]


def test_one_invalid_address_does_not_fail_the_batch(make_settings, monkeypatch, sg):
    """SG1: a malformed address (a legacy row) is skipped before the batch; the rest are mailed."""
    emails = ["ana@example.org", "ben@example.org", "cleo@example.org"]
    settings, provider, payload = _direct(make_settings, monkeypatch, sg, emails)
    from syndicate.ledger.db import open_ledger, transaction
    from syndicate.ledger.models import Subscriber

    with transaction(open_ledger(settings.store_url)) as s:  # stored before addresses were checked
        s.query(Subscriber).filter(Subscriber.email == "ben@example.org").update({"email": "ben@@example.org"})
    result = provider.send(email_job(payload))
    call, = sg.calls("POST", r"^/v3/mail/send$")
    assert [p["to"][0]["email"] for p in call["json"]["personalizations"]] == ["ana@example.org", "cleo@example.org"]
    assert recipients(settings) == {"ana@example.org": "sent", "cleo@example.org": "sent"}
    assert result.details["sent"] == 2


def test_an_address_sendgrid_refuses_by_name_fails_alone(make_settings, monkeypatch, sg):
    """SG1: SendGrid refuses the whole request naming personalizations.1.to.0.email; that
    recipient is failed and the rest of the batch is sent once more."""
    emails = ["ana@example.org", "ben@example.org", "cleo@example.org"]
    settings, provider, payload = _direct(make_settings, monkeypatch, sg, emails)
    sg.invalid_addresses = {"ben@example.org"}
    provider.send(email_job(payload))
    first, second = sg.calls("POST", r"^/v3/mail/send$")
    assert first["status"] == 400 and second["status"] == 202
    assert len(second["json"]["personalizations"]) == 2
    assert recipients(settings) == {"ana@example.org": "sent", "ben@example.org": "failed", "cleo@example.org": "sent"}
    assert [m["to"] for m in sg.delivered] == ["ana@example.org", "cleo@example.org"]


def test_asm_group_and_fixed_to_list(make_settings, monkeypatch, sg):
    settings = email_settings(make_settings, monkeypatch, sg, "sendgrid", to=["Ana@Example.org"], asm_group_id=77)
    payload = rendered_payload(settings)
    ledger_delivery(settings, payload)
    build_email(settings, "sendgrid").send(email_job(payload))
    (message,) = sg.delivered
    assert message["to"] == "ana@example.org" and message["asm"] == {"group_id": 77}


@pytest.mark.parametrize("kind, error, text, state", [
    ("401", AuthExpired, "authorization grant is invalid", "deferred"),
    ("403", AuthExpired, "access forbidden", "deferred"),
    ("400", Permanent, "from: The from address does not match", "deferred"),
    # Mail Send has no idempotency key: after a 5xx the reader may have the message (C3).
    ("500", OutcomeUnknown, "SendGrid 500", "unknown"),
])
def test_mail_send_error_mapping(make_settings, monkeypatch, sg, kind, error, text, state):
    settings, provider, payload = _direct(make_settings, monkeypatch, sg, ["ana@example.org"])
    sg.fail_next(kind, path=r"^/v3/mail/send$")
    with pytest.raises(error, match=text) as err:
        provider.send(email_job(payload))
    assert sg.API_KEY not in str(err.value)
    assert recipients(settings) == {"ana@example.org": state}


def test_check_direct(make_settings, monkeypatch, sg):
    _, provider, _ = _direct(make_settings, monkeypatch, sg, [])
    assert provider.check().endswith("mail.send granted")
    sg.revoke()
    with pytest.raises(AuthExpired):
        provider.check()


# -- Single Sends (campaign) -------------------------------------------------------------------

def _campaign(make_settings, monkeypatch, fake, options=None, **extra):
    settings = email_settings(make_settings, monkeypatch, fake, "sendgrid_singlesend",
                              options=fake.single_send_options() if options is None else options, **extra)
    return settings, build_email(settings, "sendgrid_singlesend"), rendered_payload(settings)


def test_single_send_created_and_sent_now(make_settings, monkeypatch, sg):
    _, provider, payload = _campaign(make_settings, monkeypatch, sg)
    result = provider.send(email_job(payload))
    create, = sg.calls("POST", r"^/v3/marketing/singlesends$")
    body = create["json"]
    assert body["name"] == "delivery-42-3f9a" and body["send_to"]["list_ids"] == [sg.LIST_ID]
    config = body["email_config"]
    assert config["subject"] == payload["subject"] and config["sender_id"] == sg.SENDER_ID
    assert config["suppression_group_id"] == sg.GROUP_ID and config["editor"] == "code"
    assert 'href="{{{unsubscribe}}}"' in config["html_content"] and "{{{unsubscribe}}}" in config["plain_content"]
    assert "/unsubscribe/" not in config["html_content"]
    assert '<a href="{{{unsubscribe_preferences}}}">Manage your preferences</a>' in config["html_content"]
    assert "Manage your preferences: {{{unsubscribe_preferences}}}" in config["plain_content"]
    assert "/preferences/" not in config["html_content"] + config["plain_content"]
    schedule, = sg.calls("PUT", r"/schedule$")
    assert schedule["json"] == {"send_at": "now"}
    assert sg.singlesends[result.ref]["status"] == "scheduled" and sg.schedules == [result.ref]


def test_single_send_scheduled_later(make_settings, monkeypatch, sg):
    _, provider, payload = _campaign(make_settings, monkeypatch, sg, schedule_after=60)
    provider.send(email_job(payload))
    schedule, = sg.calls("PUT", r"/schedule$")
    assert schedule["json"]["send_at"].endswith("Z")


def test_single_send_retry_after_lost_answer(make_settings, monkeypatch, sg):
    _, provider, payload = _campaign(make_settings, monkeypatch, sg)
    provider.timeout = (1, 0.5)
    sg.fail_next("stall", delay=1, path=r"/schedule$")
    with pytest.raises(OutcomeUnknown):
        provider.send(email_job(payload))
    deadline = time.monotonic() + 5
    while not sg.schedules and time.monotonic() < deadline:
        time.sleep(0.05)
    result = provider.lookup(email_job(payload, attempt=2))  # the engine asks before any retry
    assert len(sg.singlesends) == 1 and sg.schedules == [result.ref]
    assert len(sg.calls("PUT", r"/schedule$")) == 1


def test_single_send_lost_create_is_resumed_not_made_again(make_settings, monkeypatch, sg):
    _, provider, payload = _campaign(make_settings, monkeypatch, sg)
    sg.fail_next("502", path=r"^/v3/marketing/singlesends$", method="POST", then="commit")
    with pytest.raises(OutcomeUnknown, match="502"):
        provider.send(email_job(payload))
    assert provider.lookup(email_job(payload, attempt=2)) is None  # a draft: the retry schedules it
    result = provider.send(email_job(payload, attempt=2))
    assert len(sg.singlesends) == 1 and sg.schedules == [result.ref]


def test_single_send_needs_an_audience_and_sender(make_settings, monkeypatch, sg):
    options = {k: v for k, v in sg.single_send_options().items() if k != "list_ids"}
    _, provider, payload = _campaign(make_settings, monkeypatch, sg, options=options)
    with pytest.raises(Permanent, match="list_ids, segment_ids or send_to_all"):
        provider.send(email_job(payload))
    options = {k: v for k, v in sg.single_send_options().items() if k != "sender_id"}
    _, provider, payload = _campaign(make_settings, monkeypatch, sg, options=options)
    with pytest.raises(Permanent, match="option sender_id is not set"):
        provider.send(email_job(payload))
    assert not sg.singlesends


def test_single_send_rate_limited(make_settings, monkeypatch, sg):
    _, provider, payload = _campaign(make_settings, monkeypatch, sg)
    sg.fail_next("429", retry_after=90, path=r"^/v3/marketing/singlesends$", method="POST")
    with pytest.raises(RateLimited) as err:
        provider.send(email_job(payload))
    assert 80 < err.value.reset_at.timestamp() - time.time() <= 91
    provider.send(email_job(payload))
    assert len(sg.singlesends) == 1


def test_check_single_send(make_settings, monkeypatch, sg):
    _, provider, _ = _campaign(make_settings, monkeypatch, sg)
    assert "marketing scopes" in provider.check()

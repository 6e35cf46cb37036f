"""Postmark: whole messages per recipient through /email/batch, per-message ErrorCodes recorded."""

from __future__ import annotations

import pytest
import requests
from fakes import start_fake
from test_providers_email_support import (
    direct_setup,
    email_job,
    recipients,
)

from syndicate.audience import subscribers
from syndicate.providers.base import AuthExpired, Permanent, Retryable, Unresolved


@pytest.fixture
def pm():
    with start_fake("postmark") as (_base, fake):
        yield fake


def _setup(make_settings, monkeypatch, fake, emails, **extra):
    return direct_setup(make_settings, monkeypatch, fake, "postmark", emails, **extra)


def test_batch_request_shape(make_settings, monkeypatch, pm):
    _, provider, payload = _setup(make_settings, monkeypatch, pm, ["ana@example.org", "ben@example.org"])
    provider.send(email_job(payload))
    call, = pm.calls("POST", r"^/email/batch$")
    assert call["headers"]["x-postmark-server-token"] == pm.TOKEN
    first, second = call["json"]
    assert first["To"] == "ana@example.org" and second["To"] == "ben@example.org"
    assert first["From"] == '"Harbor Wellness" <news@harborwellness.example>'
    assert first["ReplyTo"] == "hello@harborwellness.example"
    assert first["MessageStream"] == "broadcast" and first["TrackOpens"] is False and first["TrackLinks"] == "None"
    assert first["Metadata"] == {"syndicate_delivery": "delivery-42-3f9a"}
    assert {h["Name"] for h in first["Headers"]} == {"List-Unsubscribe", "List-Unsubscribe-Post"}
    assert first["HtmlBody"] != second["HtmlBody"]  # each carries its own unsubscribe token
    # ... in the unsubscribe link and the preferences link alike (the same token).
    token = subscribers.unsubscribe_token(provider.settings, "ana@example.org")
    assert f'/preferences/{token}">Manage your preferences</a>' in first["HtmlBody"]
    assert f"/preferences/{token}\n" in first["TextBody"] and "{token}" not in first["HtmlBody"] + first["TextBody"]


def test_inactive_recipient_is_failed_and_not_retried(make_settings, monkeypatch, pm):
    settings, provider, payload = _setup(make_settings, monkeypatch, pm, ["ana@example.org", "bounced@example.org"])
    pm.inactive.add("bounced@example.org")
    job = email_job(payload)
    result = provider.send(job)
    assert recipients(settings) == {"ana@example.org": "sent", "bounced@example.org": "failed"}
    assert result.details == {**result.details, "sent": 1, "failed": 1}
    provider.send(job)
    assert len(pm.calls("POST", r"^/email/batch$")) == 1


def test_every_recipient_inactive_is_permanent(make_settings, monkeypatch, pm):
    settings, provider, payload = _setup(make_settings, monkeypatch, pm, ["bounced@example.org"])
    pm.inactive.add("bounced@example.org")
    with pytest.raises(Permanent, match="every recipient was refused"):
        provider.send(email_job(payload))


def test_unknown_stream_stops_the_send(make_settings, monkeypatch, pm):
    settings, provider, payload = _setup(make_settings, monkeypatch, pm, ["ana@example.org"],
                                         message_stream="newsletters")
    with pytest.raises(Permanent, match="ErrorCode 1235: The message stream 'newsletters' was not found"):
        provider.send(email_job(payload))
    assert recipients(settings) == {"ana@example.org": "deferred"}


def test_batches_capped_by_bytes(make_settings, monkeypatch, pm):
    from syndicate.providers import postmark

    _, provider, payload = _setup(make_settings, monkeypatch, pm, [f"r{i}@example.org" for i in range(7)])
    monkeypatch.setattr(postmark, "MAX_BATCH_BYTES", 2 * (len(payload["html"]) + len(payload["text"])) + 10000)
    provider.send(email_job(payload))
    assert [len(c["json"]) for c in pm.calls("POST", r"^/email/batch$")] == [2, 2, 2, 1]


def test_check_names_server_and_stream(make_settings, monkeypatch, pm):
    _, provider, _ = _setup(make_settings, monkeypatch, pm, [])
    assert provider.check() == ("Postmark server 'Harbor Wellness Newsletter' (ID 1234567); "
                                "stream 'broadcast' (Broadcasts, unsubscribes: Custom)")


def test_a_stream_whose_unsubscribes_postmark_manages_is_flagged(make_settings, monkeypatch, pm):
    """PM2: Postmark's default handling replaces our List-Unsubscribe and adds its own link."""
    pm.streams["broadcast"]["unsubscribe"] = "Postmark"
    settings, provider, payload = _setup(make_settings, monkeypatch, pm, ["ana@example.org"])
    line = provider.check()
    assert "unsubscribes: Postmark); WARNING: Postmark manages this stream's unsubscribes" in line
    assert "Manage unsubscribes on your own" in line
    provider.send(email_job(payload))  # what the reader would get: Postmark's header, two links
    (message,) = pm.delivered
    assert message["headers"]["List-Unsubscribe"].startswith("<https://pm.example/unsubscribe/")
    assert "harborwellness.example/unsubscribe/" in message["html"]


def test_a_transactional_stream_is_flagged(make_settings, monkeypatch, pm):
    _, provider, _ = _setup(make_settings, monkeypatch, pm, [], message_stream="outbound")
    assert "WARNING: newsletters must go through a Broadcasts stream" in provider.check()


@pytest.mark.parametrize("code", [405, 412, 413])
def test_an_account_that_may_not_send_is_auth_expired(make_settings, monkeypatch, pm, code):
    """PM1: a person must fix the account; the recipients are deferred, not failed."""
    settings, provider, payload = _setup(make_settings, monkeypatch, pm, ["ana@example.org"])
    pm.account_refusal = code
    with pytest.raises(AuthExpired, match=f"ErrorCode {code}"):
        provider.send(email_job(payload))
    assert recipients(settings) == {"ana@example.org": "deferred"} and not pm.delivered


def test_maintenance_is_retried_and_mails_once(make_settings, monkeypatch, pm):
    """ErrorCode 100 says the API did nothing: the batch is deferred, then mailed once."""
    settings, provider, payload = _setup(make_settings, monkeypatch, pm, ["ana@example.org", "ben@example.org"])
    pm.maintenance = 1
    with pytest.raises(Retryable, match="Maintenance"):
        provider.send(email_job(payload))
    assert set(recipients(settings).values()) == {"deferred"}
    provider.send(email_job(payload))
    assert sorted(m["to"] for m in pm.delivered) == ["ana@example.org", "ben@example.org"]


def test_a_message_the_answer_leaves_out_is_unknown(make_settings, monkeypatch, pm):
    settings, provider, payload = _setup(make_settings, monkeypatch, pm, ["ana@example.org", "ben@example.org"])
    pm.short_answer = True
    with pytest.raises(Unresolved, match="ben@example.org"):
        provider.send(email_job(payload))
    assert recipients(settings) == {"ana@example.org": "sent", "ben@example.org": "unknown"}


@pytest.mark.parametrize("field, value, code", [("TrackLinks", "Always", 300), ("To", "not-an-address", 300),
                                                ("Metadata", {"k" * 21: "v"}, 300), ("MessageStream", "nope", 1235)])
def test_the_strict_fake_refuses_what_postmark_refuses(pm, field, value, code):
    message = {"From": "news@harborwellness.example", "To": "ana@example.org", "Subject": "s", "TextBody": "t",
               field: value}
    resp = requests.post(f"{pm.base_url}/email/batch", json=[message],
                         headers={"X-Postmark-Server-Token": pm.TOKEN, "Accept": "application/json"}, timeout=5)
    assert resp.status_code == 200 and resp.json()[0]["ErrorCode"] == code and not pm.delivered
    too_many = requests.post(f"{pm.base_url}/email/batch", json=[message] * 501,
                             headers={"X-Postmark-Server-Token": pm.TOKEN, "Accept": "application/json"}, timeout=5)
    assert too_many.status_code == 422 and too_many.json()["ErrorCode"] == 410

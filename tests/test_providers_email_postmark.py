"""Postmark: whole messages per recipient through /email/batch, per-message ErrorCodes recorded."""

from __future__ import annotations

import pytest
from fakes import start_fake
from test_providers_email_support import (
    direct_setup,
    email_job,
    recipients,
)

from syndicate.providers.base import Permanent


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
    assert provider.check() == "Postmark server 'Harbor Wellness Newsletter' (ID 1234567); stream 'broadcast' (Broadcasts)"

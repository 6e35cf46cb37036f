"""Amazon SES v2: SigV4-signed SendBulkEmail (verified by the fake), per-entry statuses."""

from __future__ import annotations

import json

import pytest
from fakes import start_fake
from test_providers_email_support import (
    direct_setup,
    email_job,
    ledger_delivery,
    recipients,
)

from syndicate.providers.base import AuthExpired, Permanent, RateLimited


@pytest.fixture
def ses():
    with start_fake("ses") as (_base, fake):
        yield fake


def _setup(make_settings, monkeypatch, fake, emails, **extra):
    return direct_setup(make_settings, monkeypatch, fake, "ses", emails, **extra)


def test_signed_bulk_request(make_settings, monkeypatch, ses):
    _, provider, payload = _setup(make_settings, monkeypatch, ses, ["ana@example.org", "ben@example.org"],
                                  configuration_set="newsletter")
    provider.send(email_job(payload))
    call, = ses.calls("POST", r"^/v2/email/outbound-bulk-emails$")
    auth = call["headers"]["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={ses.ACCESS_KEY}/") and "/eu-west-1/ses/aws4_request" in auth
    body = call["json"]
    template = body["DefaultContent"]["Template"]
    assert "{{token}}" in template["TemplateContent"]["Html"] and "{{token}}" in template["TemplateContent"]["Text"]
    entry = body["BulkEmailEntries"][0]
    assert entry["Destination"] == {"ToAddresses": ["ana@example.org"]}
    assert json.loads(entry["ReplacementEmailContent"]["ReplacementTemplate"]["ReplacementTemplateData"])["token"]
    assert {h["Name"] for h in entry["ReplacementHeaders"]} == {"List-Unsubscribe", "List-Unsubscribe-Post"}
    assert body["ConfigurationSetName"] == "newsletter" and body["ReplyToAddresses"] == ["hello@harborwellness.example"]
    assert body["DefaultEmailTags"] == [{"Name": "syndicate_delivery", "Value": "delivery-42-3f9a"}]


def test_wrong_secret_fails_the_signature_check(make_settings, monkeypatch, ses):
    settings, provider, payload = _setup(make_settings, monkeypatch, ses, ["ana@example.org"])
    monkeypatch.setenv("SYN_FAKE_SES_SECRET", "not-the-secret")
    with pytest.raises(AuthExpired, match="SES 403: SignatureDoesNotMatch"):
        provider.send(email_job(payload))
    assert "not-the-secret" not in str(recipients(settings))


def test_wrong_region_is_rejected(make_settings, monkeypatch, ses):
    _, provider, payload = _setup(make_settings, monkeypatch, ses, ["ana@example.org"], region="us-east-1")
    with pytest.raises(AuthExpired, match="InvalidSignatureException"):
        provider.send(email_job(payload))


def test_braces_in_the_post_do_not_break_the_template(make_settings, monkeypatch, ses):
    _, provider, payload = _setup(make_settings, monkeypatch, ses, ["ana@example.org"])
    payload = {**payload, "subject": "Templates like {{name}}",
               "html": payload["html"].replace("</body>", "<p>{{ not a tag }}</p></body>"),
               "text": payload["text"] + "\nUse {{braces}} freely\n"}
    provider.send(email_job(payload))
    (message,) = ses.delivered
    assert message["subject"] == "Templates like { {name}}"
    assert "&#123;&#123; not a tag }}" in message["html"] and "Use { {braces}} freely" in message["text"]


def test_per_entry_statuses(make_settings, monkeypatch, ses):
    settings, provider, payload = _setup(make_settings, monkeypatch, ses,
                                         ["ana@example.org", "ben@example.org", "cleo@example.org"])
    ses.rejected.add("ben@example.org")
    ses.throttle_entries = 0
    job = email_job(payload)
    provider.send(job)
    assert recipients(settings) == {"ana@example.org": "sent", "ben@example.org": "failed",
                                    "cleo@example.org": "sent"}


def test_throttled_entries_are_deferred_and_retried(make_settings, monkeypatch, ses):
    settings, provider, payload = _setup(make_settings, monkeypatch, ses, ["ana@example.org", "ben@example.org"])
    ses.throttle_entries = 1
    job = email_job(payload)
    with pytest.raises(RateLimited, match="ACCOUNT_THROTTLED") as err:
        provider.send(job)
    assert err.value.reset_at is not None
    assert recipients(settings) == {"ana@example.org": "deferred", "ben@example.org": "sent"}
    provider.send(job)
    assert sorted(m["to"] for m in ses.delivered) == ["ana@example.org", "ben@example.org"]


def test_unverified_sender_is_permanent(make_settings, monkeypatch, ses):
    _, provider, payload = _setup(make_settings, monkeypatch, ses, ["ana@example.org"])
    with pytest.raises(Permanent, match="MessageRejected: Email address is not verified"):
        provider.send(email_job({**payload, "from": "Someone <someone@elsewhere.example>"}))


def test_default_credential_variables(make_settings, monkeypatch, ses):
    options = {k: v for k, v in ses.options().items() if not k.endswith("_env")}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ses.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ses.SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    _, provider, _ = _setup(make_settings, monkeypatch, ses, [], options=options)
    assert provider.check().startswith("SES eu-west-1: sending enabled, production access, quota 50000/24h at 14/s")


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    """No AWS credentials anywhere botocore looks, unless a test puts them there."""
    import os

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def _chain_setup(make_settings, monkeypatch, ses, emails):
    options = {k: v for k, v in ses.options().items() if not k.endswith("_env")}
    return _setup(make_settings, monkeypatch, ses, emails, options=options)


def test_shared_credentials_file_through_the_default_chain(make_settings, monkeypatch, ses, no_aws):
    """SE1: no key variables named: botocore's chain reads ~/.aws/credentials (AWS_PROFILE)."""
    (no_aws / "credentials").write_text(f"[newsletter]\naws_access_key_id = {ses.ACCESS_KEY}\n"
                                        f"aws_secret_access_key = {ses.SECRET_KEY}\n")
    monkeypatch.setenv("AWS_PROFILE", "newsletter")
    settings, provider, payload = _chain_setup(make_settings, monkeypatch, ses, ["ana@example.org"])
    provider.send(email_job(payload))
    assert recipients(settings) == {"ana@example.org": "sent"}


def test_a_role_s_temporary_credentials_are_fetched_and_refreshed(make_settings, monkeypatch, ses, no_aws):
    """SE1: the container role (ECS/EKS) of the default chain; near expiry botocore refreshes."""
    from datetime import timedelta

    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{ses.base_url}/ecs/credentials")
    ses.credential_lifetime = timedelta(minutes=12)  # inside botocore's 15-minute refresh window
    settings, provider, payload = _chain_setup(make_settings, monkeypatch, ses, ["ana@example.org", "ben@example.org"])
    provider.options["batch_size"] = 1
    provider.send(email_job(payload))
    assert recipients(settings) == {"ana@example.org": "sent", "ben@example.org": "sent"}
    signed_with = {c["headers"]["authorization"].split("Credential=")[1].split("/")[0]
                   for c in ses.calls("POST", "outbound-bulk-emails")}
    assert ses.credentials_issued >= 2 and len(signed_with) == 2 and all(k.startswith("ASIA") for k in signed_with)
    assert all(c["headers"]["x-amz-security-token"] for c in ses.calls("POST", "outbound-bulk-emails"))


def test_no_credentials_anywhere_is_auth_expired_before_anything_is_sent(make_settings, monkeypatch, ses, no_aws):
    settings, provider, payload = _chain_setup(make_settings, monkeypatch, ses, ["ana@example.org"])
    with pytest.raises(AuthExpired, match="no AWS credentials found by botocore's default chain"):
        provider.send(email_job(payload))
    assert recipients(settings) == {"ana@example.org": "deferred"} and not ses.calls("POST")


def test_addresses_go_out_in_ascii(make_settings, monkeypatch, ses):
    """SE2: a non-ASCII display name is RFC 2047 encoded, an IDN domain Punycode; a non-ASCII
    local part cannot be sent by SES and fails alone."""
    from email.header import decode_header, make_header

    settings, provider, payload = _setup(make_settings, monkeypatch, ses, ["josé@example.org", "ana@bücher.example"])
    provider.send(email_job({**payload, "from": '"Café Élan, \\"Harbor\\"" <news@harborwellness.example>'}))
    (message,) = ses.delivered
    assert message["to"] == "ana@xn--bcher-kva.example" and message["from"].isascii()
    assert str(make_header(decode_header(message["from"].split(" <")[0]))) == 'Café Élan, "Harbor"'
    assert recipients(settings) == {"josé@example.org": "failed", "ana@bücher.example": "sent"}


def test_the_strict_fake_answers_model_violations_as_ses_does(make_settings, monkeypatch, ses):
    """Checked by botocore's ParamValidator and the model's max/pattern constraints."""
    _, provider, _ = _setup(make_settings, monkeypatch, ses, [])
    entry = {"Destination": {"ToAddresses": ["ana@example.org"]},
             "ReplacementHeaders": [{"Name": "X-Long", "Value": "v" * 996}], "Bogus": 1}
    body = {"FromEmailAddress": "news@harborwellness.example", "BulkEmailEntries": [entry],
            "DefaultContent": {"Template": {"TemplateContent": {"Subject": "s", "Text": "t"}}}}
    with pytest.raises(Permanent, match="SES 400: BadRequestException: 2 validation errors detected") as err:
        provider.call("POST", "/v2/email/outbound-bulk-emails", body, what="a test")
    assert 'Unknown parameter in BulkEmailEntries[0]: "Bogus"' in str(err.value)
    answer = ses.calls("POST")[-1]
    assert answer["status"] == 400 and not ses.delivered


def test_daily_quota_waits_an_hour(make_settings, monkeypatch, ses):
    """SE3: LimitExceededException carries no reset header; the daily quota is not a short backoff."""
    from datetime import UTC, datetime, timedelta

    settings, provider, payload = _setup(make_settings, monkeypatch, ses, ["ana@example.org"])
    ses.daily_quota_exceeded = True
    with pytest.raises(RateLimited, match="Daily message quota exceeded") as err:
        provider.send(email_job(payload))
    assert err.value.reset_at > datetime.now(UTC) + timedelta(minutes=59)
    assert recipients(settings) == {"ana@example.org": "deferred"}


def test_an_entry_the_answer_leaves_out_is_unknown(make_settings, monkeypatch, ses):
    from syndicate.providers.base import Unresolved

    settings, provider, payload = _setup(make_settings, monkeypatch, ses, ["ana@example.org", "ben@example.org"])
    ses.short_answer = True
    with pytest.raises(Unresolved, match="ben@example.org"):
        provider.send(email_job(payload))
    assert recipients(settings) == {"ana@example.org": "sent", "ben@example.org": "unknown"}


def test_an_address_bounced_over_smtp_stays_suppressed_on_ses(make_settings, monkeypatch, ses):
    """One suppression list, whatever provider sends: a hard bounce the SMTP side recorded
    (record_event from "smtp"), then the next edition goes through SES: not mailed."""
    from syndicate.audience import suppression
    from syndicate.ledger.db import open_ledger, transaction

    settings, provider, payload = _setup(make_settings, monkeypatch, ses,
                                         ["ana@example.org", "ben@example.org", "cleo@example.org"])
    with transaction(open_ledger(settings.store_url)) as s:
        assert suppression.record_event(s, settings, provider="smtp", kind="bounce", subtype="hard",
                                        email="ben@example.org", diagnostic="550 5.1.1 no such user")
    provider.send(email_job(payload))
    assert sorted(m["to"] for m in ses.delivered) == ["ana@example.org", "cleo@example.org"]
    assert "ben@example.org" not in recipients(settings)
    # Named in a fixed `to` list instead of the subscriber list: still skipped, counted.
    job = email_job({**payload, "audience": None, "to": ["ben@example.org", "dev@example.org"]}, delivery_id=43,
                    key="delivery-43")
    ledger_delivery(settings, job.payload, delivery_id=43, key="delivery-43")
    assert provider.send(job).details["suppressed"] == 1
    assert sorted(m["to"] for m in ses.delivered) == ["ana@example.org", "cleo@example.org", "dev@example.org"]

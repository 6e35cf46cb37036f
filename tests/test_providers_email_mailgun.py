"""Mailgun: multipart batch sending with recipient-variables, region hosts, domain check."""

from __future__ import annotations

import base64
import json

import pytest
from fakes import start_fake
from fakes.mailgun import form_fields
from fakes.server import Request
from test_providers_email_support import (
    build_email,
    direct_setup,
    email_job,
    email_settings,
    recipients,
)

from syndicate.providers.base import AuthExpired, Permanent
from syndicate.settings import SettingsError


@pytest.fixture
def mg():
    with start_fake("mailgun") as (_base, fake):
        yield fake


def _setup(make_settings, monkeypatch, fake, emails, **extra):
    return direct_setup(make_settings, monkeypatch, fake, "mailgun", emails, **extra)


def test_multipart_batch_with_recipient_variables(make_settings, monkeypatch, mg):
    _, provider, payload = _setup(make_settings, monkeypatch, mg, ["ana@example.org", "ben@example.org"])
    provider.send(email_job(payload))
    call, = mg.calls("POST")
    assert call["path"] == f"/v3/{mg.DOMAIN}/messages"
    assert call["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert base64.b64decode(call["headers"]["authorization"][6:]).decode() == f"api:{mg.API_KEY}"
    # the recorded body is cut short; the fake kept the fields of the accepted post
    assert mg.posts[0]["to"] == ["ana@example.org", "ben@example.org"]
    assert {"h:List-Unsubscribe", "h:List-Unsubscribe-Post", "h:Reply-To", "recipient-variables",
            "v:syndicate-delivery", "o:tracking", "o:tracking-clicks", "o:tracking-opens"} <= set(mg.posts[0]["fields"])
    ana = next(m for m in mg.delivered if m["to"] == "ana@example.org")
    assert ana["options"] == {"tracking": "no", "tracking-clicks": "no", "tracking-opens": "no"}
    assert ana["variables"] == {"syndicate-delivery": "delivery-42-3f9a"}
    assert ana["headers"]["Reply-To"] == "hello@harborwellness.example"
    assert "%recipient." not in ana["html"] + ana["text"] + ana["headers"]["List-Unsubscribe"]


def test_form_parser_reads_repeated_fields():
    body = (b"--b\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\na@x.org\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\nb@x.org\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"recipient-variables\"\r\n\r\n"
            + json.dumps({"a@x.org": {"token": "t"}}).encode() + b"\r\n--b--\r\n")
    req = Request(method="POST", path="/", query={}, headers={"content-type": "multipart/form-data; boundary=b"},
                  body=body)
    assert [n for n, _ in form_fields(req)] == ["to", "to", "recipient-variables"]


@pytest.mark.parametrize("region, base", [("eu", "https://api.eu.mailgun.net"), (None, "https://api.mailgun.net")])
def test_region_picks_the_host(make_settings, monkeypatch, mg, region, base):
    options = {k: v for k, v in mg.options().items() if k != "api_base"}
    settings = email_settings(make_settings, monkeypatch, mg, "mailgun", options={**options, "region": region})
    assert build_email(settings, "mailgun").api_base == base


def test_unknown_region_and_bad_domain(make_settings, monkeypatch, mg):
    options = {k: v for k, v in mg.options().items() if k != "api_base"}
    # The settings refuse an unknown region before anything runs (syndicate/options.py).
    with pytest.raises(SettingsError, match="options.region: Input should be 'us' or 'eu'"):
        email_settings(make_settings, monkeypatch, mg, "mailgun", options={**options, "region": "mars"})
    settings = email_settings(make_settings, monkeypatch, mg, "mailgun", domain="a/b")
    with pytest.raises(Permanent, match="is not a domain"):
        _ = build_email(settings, "mailgun").domain


def test_unknown_domain_is_permanent(make_settings, monkeypatch, mg):
    _, provider, payload = _setup(make_settings, monkeypatch, mg, ["ana@example.org"], domain="other.example")
    with pytest.raises(Permanent, match="Mailgun 404: Domain not found"):
        provider.send(email_job(payload))


def test_forbidden_text_answer_is_auth_expired(make_settings, monkeypatch, mg):
    _, provider, payload = _setup(make_settings, monkeypatch, mg, ["ana@example.org"])
    mg.revoke()
    with pytest.raises(AuthExpired, match="Mailgun 401: Forbidden"):
        provider.send(email_job(payload))


def test_check(make_settings, monkeypatch, mg):
    _, provider, _ = _setup(make_settings, monkeypatch, mg, [])
    assert provider.check() == f"Mailgun domain '{mg.DOMAIN}' (active) on {mg.base_url}"


def test_each_message_is_addressed_to_its_reader_alone(make_settings, monkeypatch, mg):
    """Batch sending without recipient-variables would be one message to all: never sent so."""
    _, provider, payload = _setup(make_settings, monkeypatch, mg, ["ana@example.org", "ben@example.org"])
    provider.send(email_job(payload))
    assert sorted(m["to_header"] for m in mg.delivered) == ["ana@example.org", "ben@example.org"]


def test_one_refused_address_fails_alone_and_the_rest_are_mailed_once(make_settings, monkeypatch, mg):
    """MG1: Mailgun refuses the whole call; the batch is split until the address is alone."""
    emails = [f"reader{i}@example.org" for i in range(7)]
    settings, provider, payload = _setup(make_settings, monkeypatch, mg, emails)
    mg.invalid.add("reader4@example.org")
    result = provider.send(email_job(payload))
    assert sorted(m["to"] for m in mg.delivered) == sorted(set(emails) - {"reader4@example.org"})
    states = recipients(settings)
    assert states.pop("reader4@example.org") == "failed" and set(states.values()) == {"sent"}
    assert result.details["failed"] == 1 and result.details["sent"] == 6
    # all 7 refused; 0-2 sent; 3-6 refused; 3-4 refused; 3 sent; 4 refused alone; 5-6 sent
    assert len(mg.calls("POST")) == 7
    provider.send(email_job(payload))  # a retry mails nobody again
    assert len(mg.delivered) == 6


def test_a_non_ascii_local_part_is_failed_before_the_call(make_settings, monkeypatch, mg):
    settings, provider, payload = _setup(make_settings, monkeypatch, mg, ["josé@example.org", "ana@bücher.example"])
    provider.send(email_job(payload))
    assert [m["to"] for m in mg.delivered] == ["ana@xn--bcher-kva.example"]
    assert recipients(settings) == {"josé@example.org": "failed", "ana@bücher.example": "sent"}
    assert len(mg.calls("POST")) == 1


def test_check_accepts_a_domain_sending_key(make_settings, monkeypatch, mg):
    """MG2: a sending key cannot read the domain; the check proves it can send, sending nothing."""
    mg.sending_keys.add("sending-key-0123")
    _, provider, _ = _setup(make_settings, monkeypatch, mg, [])
    monkeypatch.setenv("SYN_FAKE_MAILGUN_KEY", "sending-key-0123")
    assert provider.check() == (f"Mailgun domain '{mg.DOMAIN}' on {mg.base_url}: a domain sending key "
                                f"(it may send, not read the domain)")
    assert not mg.delivered
    monkeypatch.setenv("SYN_FAKE_MAILGUN_KEY", "wrong-key")
    with pytest.raises(AuthExpired, match="Forbidden"):
        provider.check()


@pytest.mark.parametrize("fields, message", [
    ([("from", "news@x.example"), ("to", "a@example.org"), ("text", "t"), ("o:tracking", "off")], "o:tracking"),
    ([("from", "news@x.example"), ("to", "josé@example.org"), ("text", "t")], "'to' parameter is not a valid"),
    ([("from", "news@x.example"), ("to", "a@example.org")], "Need at least one of"),
])
def test_the_strict_fake_refuses_what_mailgun_refuses(mg, fields, message):
    import requests

    resp = requests.post(f"{mg.base_url}/v3/{mg.DOMAIN}/messages", auth=("api", mg.API_KEY),
                         files=[(n, (None, v.encode())) for n, v in fields], timeout=5)
    assert resp.status_code == 400 and message in resp.json()["message"] and not mg.delivered


def test_an_ambiguous_answer_inside_a_split_keeps_what_was_done(make_settings, monkeypatch, mg):
    """The first half of a split is queued but answered 500: it is unknown, the rest deferred;
    the retry mails the rest and fails the refused address, nobody twice."""
    from collections import Counter

    from syndicate.providers.base import OutcomeUnknown, Unresolved

    emails = [f"reader{i}@example.org" for i in range(7)]
    settings, provider, payload = _setup(make_settings, monkeypatch, mg, emails)
    mg.invalid.add("reader4@example.org")
    original, calls = provider._post, []

    def second_call_is_ambiguous(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            mg.fail_next("500", path="/messages$", then="commit")
        return original(*args, **kwargs)

    monkeypatch.setattr(provider, "_post", second_call_is_ambiguous)
    job = email_job(payload)
    with pytest.raises(OutcomeUnknown):
        provider.send(job)
    assert recipients(settings) == {**dict.fromkeys(emails[:3], "unknown"), **dict.fromkeys(emails[3:], "deferred")}
    with pytest.raises(Unresolved, match="3 recipients may or may not have the message"):
        provider.send(job)
    got = Counter(m["to"] for m in mg.delivered)
    assert got == Counter(emails[:4] + emails[5:])  # each once; reader4 never
    assert recipients(settings)["reader4@example.org"] == "failed"

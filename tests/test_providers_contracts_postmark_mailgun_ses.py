"""Issue 14's contract for the batched email APIs Postmark, Mailgun and Amazon SES v2, against
their strict fakes (SES: botocore's own SESv2 model; Postmark and Mailgun: their documented
rules, cited in the fakes).

1. The demo feed's posts and the hard cases (many emoji, right-to-left text, a 2,000-character
   URL, a sensitive post) are rendered as newsletters and sent through each adapter to its
   strict fake; each delivery reaches each recipient exactly once, and the fake refuses
   nothing.
2. Every ambiguous answer (a 5xx to the batch call after the fake queued the batch, or
   before; an answer lost to a timeout after the fake queued it) leaves that batch's
   recipients ``unknown``, and the retry mails the rest: every recipient ends with exactly one
   message or ``unknown`` (never twice, never lost), and a person settles the unknown ones.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from fakes import start_fake
from test_providers_contracts import demo_posts, hard_posts
from test_providers_email_support import (
    build_email,
    email_job,
    email_settings,
    ledger_delivery,
    recipients,
    subscribe,
)

from syndicate.providers.base import OutcomeUnknown, Unresolved
from syndicate.render import NotApplicable
from syndicate.render.payloads import email_payload

# provider -> the batch call's path
KINDS = {"postmark": r"^/email/batch$", "mailgun": r"^/v3/[^/]+/messages$",
         "ses": r"^/v2/email/outbound-bulk-emails$"}
READERS = ["ana@example.org", "ben+news@example.org", "o'brien@example.org", "cleo@bücher.example",
           "dev@sub.example.co.uk"]


def wire(kind: str, address: str) -> str:
    """ADDRESS as the API gets it: Mailgun and SES take the domain in Punycode."""
    if kind == "postmark":
        return address
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.encode('idna').decode()}"


@pytest.fixture(params=sorted(KINDS))
def api(request):
    with start_fake(request.param) as (_base, fake):
        yield request.param, fake


def _refused(fake) -> list:
    return [r for r in fake.requests if r["status"] and r["status"] >= 400]


def test_demo_and_hard_posts_reach_each_reader_exactly_once(api, make_settings, monkeypatch):
    kind, fake = api
    settings = email_settings(make_settings, monkeypatch, fake, kind, audience="subscribers", batch_size=2)
    subscribe(settings, READERS)
    expected = sorted(wire(kind, a) for a in READERS)
    sent = 0
    for n, post in enumerate(demo_posts() + hard_posts()):
        try:
            payload = email_payload(post, settings, "news", settings.channels["news"])
        except NotApplicable:
            continue
        key = f"delivery-{n}"
        ledger_delivery(settings, payload, delivery_id=100 + n, key=key)
        before = len(fake.delivered)
        provider = build_email(settings, kind)
        result = provider.send(email_job(payload, key=key, delivery_id=100 + n))
        provider.close()
        got = [m["to"] for m in fake.delivered[before:]]
        assert sorted(got) == expected, f"{kind}: {post.title[:40]!r} reached {Counter(got)}"
        assert set(recipients(settings, 100 + n).values()) == {"sent"} and result.details["sent"] == len(READERS)
        assert not _refused(fake), f"{kind}: the strict fake refused {_refused(fake)[0]}"
        sent += 1
    assert sent == 9


def _wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


AMBIGUOUS = [("500", "commit"), ("502", "commit"), ("503", "commit"), ("504", "commit"), ("500", "process"),
             ("stall", "process")]


@pytest.mark.parametrize("fault, then", AMBIGUOUS, ids=[f"{f}-{t}" for f, t in AMBIGUOUS])
def test_an_ambiguous_answer_leaves_its_batch_unknown_and_nobody_twice(api, make_settings, monkeypatch, fault, then):
    kind, fake = api
    path = KINDS[kind]
    emails = [f"reader{i}@example.org" for i in range(5)]
    settings = email_settings(make_settings, monkeypatch, fake, kind, audience="subscribers", batch_size=2)
    payload = email_payload(demo_posts()[0], settings, "news", settings.channels["news"])
    ledger_delivery(settings, payload)
    subscribe(settings, emails)
    provider = build_email(settings, kind)
    provider.timeout = (1, 0.5)
    original, calls = provider.send_batch, []

    def second_is_ambiguous(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            fake.fail_next(fault, path=path, then=then, delay=1)
        return original(*args, **kwargs)

    monkeypatch.setattr(provider, "send_batch", second_is_ambiguous)
    job = email_job(payload)
    with pytest.raises(OutcomeUnknown, match="so far 2 sent, 2 unresolved"):
        provider.send(job)
    made = then == "commit" or fault == "stall"
    _wait_for(lambda: len(fake.delivered) == (4 if made else 2))
    # The engine retries the delivery: the rest are mailed, the unknown two are not.
    with pytest.raises(Unresolved, match="2 recipients may or may not have the message") as left:
        provider.send(job)
    provider.close()
    assert left.value.recipients == emails[2:4]
    got = Counter(m["to"] for m in fake.delivered)
    states = recipients(settings)
    for address in emails:
        assert got[address] <= 1, f"{address} mailed {got[address]} times"
        assert states[address] in ("sent", "unknown")
        assert (states[address] == "sent") <= (got[address] == 1)  # sent means they have it
    assert [a for a in emails if states[a] == "unknown"] == emails[2:4]
    assert all(got[a] == (1 if made else 0) for a in emails[2:4])
    assert len(fake.calls("POST", path)) == 3

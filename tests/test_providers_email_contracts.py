"""Issue 14's contract for Mailchimp, Buttondown and SendGrid, against their strict fakes.

1. The demo feed's posts and the hard cases (many emoji, right-to-left text, a 2,000-character
   URL, a sensitive post) are rendered as newsletters, sent through each adapter to its strict
   fake (Buttondown and SendGrid check every body against the official OpenAPI; Mailchimp's
   documented rules), and each delivery makes exactly one campaign (one Mail Send for SendGrid).
2. Every ambiguous answer the review names (a lost answer or a 5xx after the fake made the
   campaign) goes through the real engine (claim, deliver, lookup, retry): exactly one
   campaign in the end, sent once.
"""

from __future__ import annotations

import uuid

import pytest
from fakes import start_fake
from test_providers_contracts import _attempt, demo_posts, hard_posts
from test_providers_email_support import SECRET_ENV, addresses, ledger_delivery, subscribe

from syndicate import providers
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, utcnow
from syndicate.providers.base import Job
from syndicate.render.payloads import email_payload

CAMPAIGNS = {"mailchimp": "mailchimp", "buttondown": "buttondown", "sendgrid_singlesend": "sendgrid"}


def _channel(fake, provider: str, **options) -> dict:
    base = fake.single_send_options() if provider == "sendgrid_singlesend" else fake.options()
    return {"kind": "email", "provider": provider, "options": {**base, "timeout": 2, **options},
            "from_address": "news@harborwellness.example", "from_name": "Harbor Wellness",
            "reply_to": "hello@harborwellness.example"}


def _env(monkeypatch, fake) -> None:
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(SECRET_ENV, "test-signing-key-0123456789-abcdefghijkl")


def made(provider: str, fake) -> list:
    """What the fake holds as made campaigns, one entry per campaign."""
    if provider == "mailchimp":
        return list(fake.campaigns)
    if provider == "buttondown":
        return [e["id"] for e in fake.emails]
    return list(fake.singlesends)


def sent_once(provider: str, fake) -> bool:
    """Every campaign the fake holds was sent (or scheduled) exactly once."""
    if provider == "mailchimp":
        return sorted(fake.sends) == sorted(fake.campaigns)
    if provider == "buttondown":
        return all(e["status"] in ("about_to_send", "scheduled") for e in fake.emails)
    return sorted(fake.schedules) == sorted(fake.singlesends)


@pytest.mark.parametrize("provider", list(CAMPAIGNS))
def test_demo_and_hard_posts_make_exactly_one_campaign_each(provider, make_settings, monkeypatch):
    with start_fake(CAMPAIGNS[provider]) as (_base, fake):
        _env(monkeypatch, fake)
        settings = make_settings(channels={"news": _channel(fake, provider)}, web={"secret_env": SECRET_ENV})
        adapter = providers.get(provider)(settings, "news", settings.channels["news"])
        refs = []
        posts = demo_posts() + hard_posts()
        for n, post in enumerate(posts):
            payload = email_payload(post, settings, "news", settings.channels["news"])
            result = adapter.send(Job(delivery_id=n + 1, key=f"delivery-{n}-{uuid.uuid4().hex[:6]}", channel="news",
                                      kind="email", payload=payload, post_url=post.url))
            assert result.ref, f"{provider}: no reference for {post.title[:40]!r}"
            refs.append(result.ref)
        adapter.close()
        refused = [r for r in fake.requests if r["status"] and r["status"] >= 400]
        assert not refused, f"{provider}: the strict fake refused {refused[0]['path']}: {refused[0]}"
        assert len(set(refs)) == len(refs) == len(made(provider, fake)) == len(posts) == 9
        assert sent_once(provider, fake)


def test_demo_and_hard_posts_make_one_mail_send_each(make_settings, monkeypatch):
    """SendGrid Mail Send: one request per delivery (all its recipients), each body valid."""
    with start_fake("sendgrid") as (_base, fake):
        _env(monkeypatch, fake)
        settings = make_settings(channels={"news": _channel(fake, "sendgrid", audience="subscribers")},
                                 web={"secret_env": SECRET_ENV})
        subscribe(settings, addresses(5))
        adapter = providers.get("sendgrid")(settings, "news", settings.channels["news"])
        posts = demo_posts() + hard_posts()
        for n, post in enumerate(posts):
            payload = email_payload(post, settings, "news", settings.channels["news"])
            ledger_delivery(settings, payload, delivery_id=n + 1, key=f"delivery-{n}")
            adapter.send(Job(delivery_id=n + 1, key=f"delivery-{n}", channel="news", kind="email",
                             payload=payload, post_url=post.url))
        refused = [r for r in fake.requests if r["status"] and r["status"] >= 400]
        assert not refused, f"sendgrid: the strict fake refused {refused[0]['path']}: {refused[0]}"
        assert len(fake.calls("POST", r"^/v3/mail/send$")) == len(posts) and len(fake.delivered) == 5 * len(posts)


# -- ambiguous answers, through the engine ------------------------------------------------------

def _delivery(store_url, make_settings, monkeypatch, fake, provider):
    _env(monkeypatch, fake)
    settings = make_settings(store_url=store_url, channels={"news": _channel(fake, provider)},
                             web={"secret_env": SECRET_ENV}, run={"retry_base": "1s", "max_attempts": 5})
    post = demo_posts()[0]
    payload = email_payload(post, settings, "news", settings.channels["news"])
    factory = open_ledger(store_url)
    with transaction(factory) as s:
        s.add(Delivery(key=uuid.uuid4().hex, subject=f"t:{uuid.uuid4().hex}", channel="news", kind="email",
                       provider=provider, state="planned", due_at=utcnow(), payload=payload, post_url=post.url))
    return settings, factory


def _settle(settings, factory, attempts=4):
    states = []
    for _ in range(attempts):
        outcome = _attempt(settings, factory)
        if outcome is None:
            break
        states.append(outcome.state)
    with transaction(factory) as s:
        return states, s.query(Delivery).one()


# (provider, the call that answers ambiguously, the fault): each after the fake did the work.
AMBIGUOUS = [
    ("mailchimp", r"^/3\.0/campaigns$", "500"),
    ("mailchimp", r"^/3\.0/campaigns$", "502"),
    ("mailchimp", r"^/3\.0/campaigns$", "stall"),
    ("mailchimp", r"/actions/send$", "503"),
    ("mailchimp", r"/actions/send$", "stall"),
    ("buttondown", r"^/v1/emails$", "500"),
    ("buttondown", r"^/v1/emails$", "503"),
    ("buttondown", r"^/v1/emails$", "504"),
    ("buttondown", r"^/v1/emails$", "stall"),
    ("sendgrid_singlesend", r"^/v3/marketing/singlesends$", "502"),
    ("sendgrid_singlesend", r"^/v3/marketing/singlesends$", "stall"),
    ("sendgrid_singlesend", r"/schedule$", "500"),
    ("sendgrid_singlesend", r"/schedule$", "stall"),
]


@pytest.mark.parametrize("provider, path, fault", AMBIGUOUS)
def test_ambiguous_answer_ends_with_one_campaign(store_url, make_settings, monkeypatch, provider, path, fault):
    with start_fake(CAMPAIGNS[provider]) as (_base, fake):
        settings, factory = _delivery(store_url, make_settings, monkeypatch, fake, provider)
        method = "PUT" if path.endswith("schedule$") else "POST"
        if fault == "stall":  # made, but the answer comes after our 2 s timeout
            fake.fail_next("stall", delay=3, path=path, method=method)
        else:
            fake.fail_next(fault, path=path, method=method, then="commit")
        states, row = _settle(settings, factory)
        assert states[-1] == "sent" and len(states) == 2, (states, row.last_error)
        assert len(made(provider, fake)) == 1 and row.provider_ref == made(provider, fake)[0]
        assert sent_once(provider, fake)


def test_without_the_specs_the_strict_email_fakes_fail_loudly(tmp_path, monkeypatch):
    """No silent skip: without ../shared/specs the Buttondown and SendGrid fakes refuse to start."""
    from fakes import specs

    caches = (specs.openapi_validator, specs._openapi)
    monkeypatch.delenv("SYNDICATE_SHARED", raising=False)
    monkeypatch.setattr(specs, "REPO", tmp_path / "wt" / "repo")
    for cache in caches:
        cache.cache_clear()
    try:
        for kind in ("buttondown", "sendgrid"):
            with pytest.raises(specs.SpecsMissing, match="set SYNDICATE_SHARED"):
                with start_fake(kind):
                    pass
    finally:
        for cache in caches:
            cache.cache_clear()

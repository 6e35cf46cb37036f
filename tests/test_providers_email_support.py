"""Helpers for the email provider tests (tests/test_providers_email_*.py); no tests here.

``rendered_payload`` renders the demo post through the real email templates, so what the
adapters send is what the renderer produces (footer, unsubscribe link with ``{token}``).
``ledger_delivery`` makes the delivery row that per-recipient records hang on, and
``recipients`` reads those records back.
"""

from __future__ import annotations

import copy

from sqlalchemy import select
from test_render_support import demo_post

from syndicate import providers
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, RecipientSend, utcnow
from syndicate.providers.base import Job
from syndicate.render.payloads import email_payload

SECRET_ENV = "SYN_TEST_LINK_SECRET"
DELIVERY_ID = 42


def email_settings(make_settings, monkeypatch, fake, provider: str, *, options=None, to=(), **extra):
    """Settings with one email channel "news" of PROVIDER pointed at FAKE (credentials set)."""
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(SECRET_ENV, "test-signing-key-0123456789-abcdefghijkl")
    opts = {**(options if options is not None else fake.options()), "timeout": 3, **extra}
    channel = {"kind": "email", "provider": provider, "options": opts, "to": list(to),
               "from_address": "news@harborwellness.example", "from_name": "Harbor Wellness",
               "reply_to": "hello@harborwellness.example"}
    return make_settings(channels={"news": channel}, web={"secret_env": SECRET_ENV})


def build_email(settings, provider: str):
    return providers.get(provider)(settings, "news", settings.channels["news"])


def rendered_payload(settings) -> dict:
    return email_payload(demo_post(), settings, "news", settings.channels["news"])


def email_job(payload: dict, *, key: str = "delivery-42-3f9a", delivery_id: int = DELIVERY_ID,
              attempt: int = 1) -> Job:
    """ATTEMPT > 1 is a retry: a campaign adapter then looks for what an earlier attempt made."""
    return Job(delivery_id=delivery_id, key=key, channel="news", kind="email", payload=copy.deepcopy(payload),
               post_url="https://wellness.example/2024/03/before-your-first-session/", attempt=attempt)


def ledger_delivery(settings, payload: dict, *, delivery_id: int = DELIVERY_ID, key: str = "delivery-42-3f9a"):
    """The delivery row (state sending) that recipient_sends rows point at."""
    factory = open_ledger(settings.store_url)
    now = utcnow()
    with transaction(factory) as s:
        s.add(Delivery(id=delivery_id, key=key, subject=f"post:{delivery_id}", channel="news", kind="email",
                       provider=settings.channels["news"].provider, state="sending", due_at=now,
                       payload=payload, attempts=1, created_at=now, updated_at=now))
    return factory


def recipients(settings, delivery_id: int = DELIVERY_ID) -> dict[str, str]:
    """recipient -> state of one delivery's per-recipient records."""
    factory = open_ledger(settings.store_url)
    with transaction(factory) as s:
        rows = s.execute(select(RecipientSend.recipient, RecipientSend.state)
                         .where(RecipientSend.delivery_id == delivery_id)).all()
    return dict(rows)


def addresses(n: int, start: int = 0) -> list[str]:
    return [f"reader{i:05d}@example.org" for i in range(start, start + n)]


def subscribe(settings, emails: list[str]) -> None:
    """Put EMAILS on the subscriber list as active subscribers."""
    from syndicate.audience import subscribers

    factory = open_ledger(settings.store_url)
    rows = [subscribers.Row(line=i, email=e) for i, e in enumerate(emails, start=1)]
    subscribers.import_rows(factory, settings, rows, source="test")


def token_address(settings, url_or_token: str) -> str:
    """The address a signed unsubscribe token (or a URL ending in one) is for."""
    from syndicate.audience import subscribers

    return subscribers.read_unsubscribe_token(settings, url_or_token.rstrip("/").rsplit("/", 1)[-1])


def direct_setup(make_settings, monkeypatch, fake, provider_name: str, emails: list[str], **extra):
    """A direct-send channel on FAKE mailing the subscriber list EMAILS, with a rendered payload
    and its delivery in the ledger: (settings, provider, payload)."""
    settings = email_settings(make_settings, monkeypatch, fake, provider_name, audience="subscribers", **extra)
    payload = rendered_payload(settings)
    ledger_delivery(settings, payload)
    subscribe(settings, emails)
    return settings, build_email(settings, provider_name), payload

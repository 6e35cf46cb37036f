"""The direct-send providers (SendGrid Mail Send, Postmark, Mailgun, SES) share one contract:
the subscriber list in batches of the API's size, each recipient's own unsubscribe link and
RFC 8058 headers, a record per recipient, and a retry that never mails anyone twice.

Each test runs against every provider's local fake at the provider's real batch limit.
"""

from __future__ import annotations

import time

import pytest
from fakes import start_fake
from test_providers_email_support import (
    addresses,
    build_email,
    direct_setup,
    email_job,
    email_settings,
    recipients,
    rendered_payload,
    subscribe,
    token_address,
)

from syndicate.audience import subscribers
from syndicate.ledger.db import open_ledger
from syndicate.providers.base import (
    AuthExpired,
    Incomplete,
    OutcomeUnknown,
    Permanent,
    RateLimited,
    Retryable,
    Unresolved,
)

# provider -> (fake, the send call's path, the API's batch limit)
PROVIDERS = {
    "sendgrid": ("sendgrid", r"^/v3/mail/send$", 1000),
    "postmark": ("postmark", r"^/email/batch$", 500),
    "mailgun": ("mailgun", r"^/v3/[^/]+/messages$", 1000),
    "ses": ("ses", r"^/v2/email/outbound-bulk-emails$", 50),
}


@pytest.fixture(params=sorted(PROVIDERS))
def direct(request):
    provider = request.param
    fake_name, path, limit = PROVIDERS[provider]
    with start_fake(fake_name) as (_base, fake):
        yield provider, fake, path, limit


def _setup(make_settings, monkeypatch, direct, emails, **extra):
    provider_name, fake, _path, _limit = direct
    return direct_setup(make_settings, monkeypatch, fake, provider_name, emails, **extra)


def _wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_each_recipient_gets_their_own_link_and_headers(make_settings, monkeypatch, direct):
    _, fake, path, _ = direct
    emails = ["ana@example.org", "ben@example.org", "cleo@example.org"]
    settings, provider, payload = _setup(make_settings, monkeypatch, direct, emails)
    result = provider.send(email_job(payload))
    assert len(fake.calls("POST", path)) == 1
    assert sorted(m["to"] for m in fake.delivered) == emails
    for message in fake.delivered:
        assert message["subject"] == payload["subject"]
        web, mailto = [t.strip(" <>") for t in message["headers"]["List-Unsubscribe"].split(",")]
        assert web.startswith("https://harborwellness.example/unsubscribe/")
        assert token_address(settings, web) == message["to"]
        assert mailto.startswith("mailto:news@harborwellness.example?subject=unsubscribe%20")
        assert message["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert f'href="{web}"' in message["html"] and f"Unsubscribe: {web}" in message["text"]
        assert "{token}" not in message["html"] + message["text"]
        assert message["message_id"]
    assert recipients(settings) == dict.fromkeys(emails, "sent")
    assert result.details["sent"] == 3 and provider.deduplicates is True


def test_batches_split_at_the_api_limit(make_settings, monkeypatch, direct):
    _, fake, path, limit = direct
    emails = addresses(limit + 1)
    settings, provider, payload = _setup(make_settings, monkeypatch, direct, emails)
    result = provider.send(email_job(payload))
    assert len(fake.calls("POST", path)) == 2
    delivered = [m["to"] for m in fake.delivered]
    assert sorted(delivered) == emails and len(set(delivered)) == limit + 1
    assert result.details["sent"] == limit + 1
    states = recipients(settings)
    assert len(states) == limit + 1 and set(states.values()) == {"sent"}


def test_throttled_second_batch_completes_later_without_duplicates(make_settings, monkeypatch, direct):
    _, fake, path, limit = direct
    emails = addresses(limit + 5)
    settings, provider, payload = _setup(make_settings, monkeypatch, direct, emails)
    original, calls = provider.send_batch, []

    def second_is_throttled(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            fake.fail_next("429", retry_after=30, path=path)
        return original(*args, **kwargs)

    monkeypatch.setattr(provider, "send_batch", second_is_throttled)
    job = email_job(payload)
    with pytest.raises(RateLimited) as err:
        provider.send(job)
    assert f"so far {limit} sent, 5 deferred" in str(err.value)
    states = recipients(settings)
    assert list(states.values()).count("sent") == limit and list(states.values()).count("deferred") == 5

    # The engine retries the same delivery (same Job) once the reset has passed.
    result = provider.send(job)
    assert len(fake.calls("POST", path)) == 3  # batch 1, the throttled batch 2, batch 2 again
    delivered = [m["to"] for m in fake.delivered]
    assert sorted(delivered) == emails and len(delivered) == len(set(delivered))
    assert set(recipients(settings).values()) == {"sent"}
    assert result.details["sent"] == 5 and result.details["already"] == limit

    provider.send(job)  # a third run has nothing left to do
    assert len(fake.calls("POST", path)) == 3


def test_timeout_leaves_the_batch_unknown_and_never_resends_it(make_settings, monkeypatch, direct):
    _, fake, path, _ = direct
    emails = addresses(5)
    settings, provider, payload = _setup(make_settings, monkeypatch, direct, emails, batch_size=2)
    provider.timeout = (1, 0.5)
    original, calls = provider.send_batch, []

    def second_stalls(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            fake.fail_next("stall", delay=1, path=path)
        return original(*args, **kwargs)

    monkeypatch.setattr(provider, "send_batch", second_stalls)
    job = email_job(payload)
    with pytest.raises(OutcomeUnknown, match="so far 2 sent, 2 unresolved"):
        provider.send(job)
    _wait_for(lambda: len(fake.delivered) == 4)  # the provider did send the stalled batch
    assert recipients(settings) == {**dict.fromkeys(emails[:2], "sent"), **dict.fromkeys(emails[2:4], "unknown")}

    # The retry mails the rest; the unknown two are not mailed again, and the send is not
    # `sent`: it ends Unresolved, naming them, for a person to settle.
    with pytest.raises(Unresolved, match="2 recipients may or may not have the message") as left:
        provider.send(job)
    assert sorted(m["to"] for m in fake.delivered) == emails  # everyone once: the unknown two not again
    assert left.value.recipients == emails[2:4] and "1 sent" in str(left.value)


def test_suppressed_and_already_mailed_are_skipped(make_settings, monkeypatch, direct):
    _, fake, path, _ = direct
    settings, provider, payload = _setup(make_settings, monkeypatch, direct,
                                         ["ana@example.org", "ben@example.org", "cleo@example.org"])
    factory = open_ledger(settings.store_url)
    subscribers.suppress(factory, "ben@example.org", "unsubscribed via one-click")
    job = email_job(payload)
    first = provider.send(job)
    assert sorted(m["to"] for m in fake.delivered) == ["ana@example.org", "cleo@example.org"]
    assert first.details["sent"] == 2
    subscribe(settings, ["dev@example.org"])  # joined while the delivery was being retried
    second = provider.send(job)
    assert sorted(m["to"] for m in fake.delivered) == ["ana@example.org", "cleo@example.org", "dev@example.org"]
    assert second.details["already"] == 2 and second.details["sent"] == 1


@pytest.mark.parametrize("kind, error", [("401", AuthExpired), ("400", Permanent), ("500", Retryable),
                                         ("429", RateLimited)])
def test_error_mapping_records_the_batch_deferred(make_settings, monkeypatch, direct, kind, error):
    _, fake, path, _ = direct
    settings, provider, payload = _setup(make_settings, monkeypatch, direct, ["ana@example.org"])
    fake.fail_next(kind, path=path)
    if kind == "500" and provider.server_errors_may_have_sent:  # may have been accepted: never resent
        with pytest.raises(OutcomeUnknown):
            provider.send(email_job(payload))
        assert recipients(settings) == {"ana@example.org": "unknown"}
        with pytest.raises(Unresolved):
            provider.send(email_job(payload))
        assert not fake.delivered and len(fake.calls("POST", path)) == 1
        return
    with pytest.raises(error) as err:
        provider.send(email_job(payload))
    secrets = set(fake.env().values())
    assert not any(s in str(err.value) for s in secrets)
    assert recipients(settings) == {"ana@example.org": "deferred"} and not fake.delivered
    provider.send(email_job(payload))  # deferred means "not accepted": the retry mails them
    assert [m["to"] for m in fake.delivered] == ["ana@example.org"]


def test_missing_link_secret_is_auth_expired(make_settings, monkeypatch, direct):
    _, fake, path, _ = direct
    settings, provider, payload = _setup(make_settings, monkeypatch, direct, ["ana@example.org"])
    monkeypatch.delenv("SYN_TEST_LINK_SECRET")
    with pytest.raises(AuthExpired, match="SYN_TEST_LINK_SECRET"):
        provider.send(email_job(payload))
    assert not fake.calls("POST", path) and recipients(settings) == {"ana@example.org": "deferred"}


def test_check_and_revoked_credentials(make_settings, monkeypatch, direct):
    _, fake, _, _ = direct
    _, provider, _ = _setup(make_settings, monkeypatch, direct, [])
    assert provider.check()
    fake.revoke()
    with pytest.raises(AuthExpired):
        provider.check()


def test_through_the_engine_a_throttled_delivery_is_rescheduled_then_completes(store_url, make_settings,
                                                                                monkeypatch):
    """deliver() on both ledgers: the 429 puts the delivery back to planned at the provider's reset
    time; the next run mails only those not yet mailed."""
    from datetime import timedelta

    from sqlalchemy import update

    from syndicate.engine.deliver import deliver
    from syndicate.engine.dispatch import claim_due
    from syndicate.engine.ratelimit import MemoryLimiter
    from syndicate.ledger.db import transaction
    from syndicate.ledger.models import Delivery, utcnow

    emails = addresses(5, start=900)
    with start_fake("sendgrid") as (_base, fake):
        settings = email_settings(make_settings, monkeypatch, fake, "sendgrid", to=emails, batch_size=2)
        settings = settings.model_copy(update={"store": settings.store.model_copy(update={"url": store_url})})
        payload = rendered_payload(settings)
        factory = open_ledger(store_url)
        with transaction(factory) as s:
            s.add(Delivery(key="engine-throttle-1", subject="post:engine", channel="news", kind="email",
                           provider="sendgrid", state="planned", due_at=utcnow(), payload=payload))
        provider = build_email(settings, "sendgrid")
        original, calls = provider.send_batch, []

        def second_is_throttled(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                fake.fail_next("429", retry_after=600, path=r"^/v3/mail/send$")
            return original(*args, **kwargs)

        monkeypatch.setattr(provider, "send_batch", second_is_throttled)

        def run_once():
            [claim] = claim_due(factory, utcnow(), limit=1, ttl=timedelta(minutes=5))
            return deliver(factory, settings, claim.delivery_id, claim.token, limiter=MemoryLimiter(),
                           provider_cache={"news": provider})

        assert run_once().state == "planned"
        with transaction(factory) as s:
            row = s.query(Delivery).filter_by(key="engine-throttle-1").one()
            assert row.error_class == "rate_limited" and row.due_at > utcnow() + timedelta(seconds=500)
            delivery_id = row.id
            s.execute(update(Delivery).where(Delivery.id == delivery_id).values(due_at=utcnow()))
        assert sorted(recipients(settings, delivery_id).values()) == ["deferred"] * 2 + ["sent"] * 2

        assert run_once().state == "sent"
        delivered = [m["to"] for m in fake.delivered]
        assert sorted(delivered) == emails and len(delivered) == len(set(delivered))
        assert set(recipients(settings, delivery_id).values()) == {"sent"}


def test_a_long_list_stops_at_its_time_budget_and_the_engine_continues_it(store_url, make_settings, monkeypatch,
                                                                           direct):
    """task_time_limit 2s: a send may spend 1 s, and every API call takes 0.4 s. The send stops
    between calls; deliver() plans it again at once, uncounted, until it is sent: every
    recipient mailed once, the attempts untouched."""
    from datetime import timedelta

    from syndicate.engine.deliver import deliver
    from syndicate.engine.dispatch import claim_due
    from syndicate.engine.ratelimit import MemoryLimiter
    from syndicate.ledger.db import transaction
    from syndicate.ledger.models import Delivery, utcnow

    provider_name, fake, path, _ = direct
    emails = addresses(14, start=700)
    settings = email_settings(make_settings, monkeypatch, fake, provider_name, to=emails, batch_size=2)
    settings = settings.model_copy(update={
        "store": settings.store.model_copy(update={"url": store_url}),
        "run": settings.run.model_copy(update={"task_time_limit": timedelta(seconds=2)})})
    fake.fail_next("stall", count=100, delay=0.4, path=path)  # each call: 0.4 s, then processed
    factory = open_ledger(store_url)
    with transaction(factory) as s:
        s.add(Delivery(key=f"engine-budget-{provider_name}", subject="post:budget", channel="news", kind="email",
                       provider=provider_name, state="planned", due_at=utcnow(), payload=rendered_payload(settings)))
    provider = build_email(settings, provider_name)
    outcomes = []
    while len(outcomes) < 20:
        [claim] = claim_due(factory, utcnow(), limit=1, ttl=timedelta(minutes=5))
        outcomes.append(deliver(factory, settings, claim.delivery_id, claim.token, limiter=MemoryLimiter(),
                                provider_cache={"news": provider}))
        if outcomes[-1].error_class != "incomplete":
            break
    *rounds, last = outcomes
    assert len(rounds) >= 2 and last.state == "sent", outcomes
    assert all(o.state == "planned" and "time budget of 1s used" in o.detail and "; continuing" in o.detail
               for o in rounds)
    delivered = [m["to"] for m in fake.delivered]
    assert sorted(delivered) == emails and len(delivered) == len(set(delivered))
    with transaction(factory) as s:
        row = s.query(Delivery).filter_by(key=f"engine-budget-{provider_name}").one()
        assert row.state == "sent" and row.attempts == 1
        delivery_id = row.id
    assert set(recipients(settings, delivery_id).values()) == {"sent"}


@pytest.mark.parametrize("where", ["before the call", "during the call", "while recording the answer"])
def test_the_soft_time_limit_leaves_the_batch_in_hand_right(make_settings, monkeypatch, direct, where):
    """Celery's soft limit strikes in the 2nd batch: claimed but not yet sent, it goes back to
    deferred (mailed by the continued send); once the API call had begun, unknown (never mailed
    again); once answered, recorded as answered. Nobody is left `sending`; nobody gets two."""
    from celery.exceptions import SoftTimeLimitExceeded

    from syndicate.email import recipients as recipients_mod

    _, fake, path, _ = direct
    emails = addresses(5)
    settings, provider, payload = _setup(make_settings, monkeypatch, direct, emails, batch_size=2)
    batches, records = [], []
    if where == "before the call":
        real_personalize = provider._personalize

        def personalize(*args, **kwargs):
            batches.append(1)
            if len(batches) == 2:
                raise SoftTimeLimitExceeded()
            return real_personalize(*args, **kwargs)

        monkeypatch.setattr(provider, "_personalize", personalize)
    elif where == "during the call":
        real_send_batch = provider.send_batch

        def send_batch(*args, **kwargs):
            answer = real_send_batch(*args, **kwargs)
            batches.append(1)
            if len(batches) == 2:
                raise SoftTimeLimitExceeded()  # the call went out; its answer never reaches us
            return answer

        monkeypatch.setattr(provider, "send_batch", send_batch)
    else:
        real_record = recipients_mod.record

        def record(*args, **kwargs):
            records.append(1)
            if len(records) == 2:
                raise SoftTimeLimitExceeded()  # before the 2nd batch's answer is committed
            return real_record(*args, **kwargs)

        monkeypatch.setattr(recipients_mod, "record", record)
    job = email_job(payload)
    with pytest.raises(Incomplete, match="soft time limit: sent") as stopped:
        provider.send(job)
    second = {"before the call": "deferred", "during the call": "unknown", "while recording the answer": "sent"}[where]
    assert recipients(settings) == {**dict.fromkeys(emails[:2], "sent"), **dict.fromkeys(emails[2:4], second)}
    assert ("sent 4 of 5" if second == "sent" else "sent 2 of 5") in str(stopped.value)

    if second == "unknown":  # the engine continues the delivery; it ends waiting for a person
        with pytest.raises(Unresolved) as left:
            provider.send(job)
        assert left.value.recipients == emails[2:4]
    else:
        assert provider.send(job).details["unresolved"] == []
    delivered = [m["to"] for m in fake.delivered]
    assert sorted(delivered) == emails and len(delivered) == len(set(delivered))
    states = recipients(settings)
    assert states == {**dict.fromkeys(emails, "sent"), **({a: "unknown" for a in emails[2:4]} if second == "unknown"
                                                         else {})}

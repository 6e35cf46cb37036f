"""deliver() on both ledgers against local provider servers: each error class lands in the
state the rules give it, and the rate limiter defers instead of sending."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from fakes import start_fake
from sqlalchemy import update

from syndicate.engine.deliver import deliver
from syndicate.engine.dispatch import claim_due, reap_expired
from syndicate.engine.ratelimit import MemoryLimiter
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Event, utcnow


@pytest.fixture
def x_fake():
    with start_fake("x", stall_seconds=4) as (url, fake):
        yield fake


@pytest.fixture
def masto_fake():
    with start_fake("mastodon", stall_seconds=4) as (url, fake):
        yield fake


def _setup(store_url, make_settings, monkeypatch, fake, kind, **options):
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    settings = make_settings(store_url=store_url, channels={
        kind: {"kind": kind, "provider": kind, "options": {**fake.options(), "timeout": 2, **options}}},
        run={"retry_base": "10s", "max_attempts": 3})
    factory = open_ledger(store_url)
    with transaction(factory) as s:
        body = {"text": "Hello"} if kind == "x" else {"status": "Hello", "visibility": "public"}
        s.add(Delivery(key=uuid.uuid4().hex, subject=f"t:{uuid.uuid4().hex}", channel=kind, kind=kind,
                       provider=kind, state="planned", due_at=utcnow(), payload=body))
    return settings, factory


def _once(settings, factory, limiter=None):
    [claim] = claim_due(factory, utcnow(), limit=1, ttl=timedelta(minutes=5))
    return deliver(factory, settings, claim.delivery_id, claim.token, limiter=limiter or MemoryLimiter())


def _row(factory):
    with transaction(factory) as s:
        return s.query(Delivery).one()


def test_sent_records_the_provider_reference(store_url, make_settings, monkeypatch, x_fake):
    settings, factory = _setup(store_url, make_settings, monkeypatch, x_fake, "x")
    assert _once(settings, factory).state == "sent"
    row = _row(factory)
    assert row.provider_ref and row.provider_ref in x_fake.posts and row.attempts == 1


def test_rate_limit_goes_back_into_due_at(store_url, make_settings, monkeypatch, x_fake):
    settings, factory = _setup(store_url, make_settings, monkeypatch, x_fake, "x")
    x_fake.fail_next("429", retry_after=120)
    before = utcnow()
    assert _once(settings, factory).state == "planned"
    row = _row(factory)
    assert timedelta(seconds=110) < row.due_at - before < timedelta(seconds=130)
    assert row.error_class == "rate_limited"


def test_server_errors_retry_then_fail_after_max_attempts(store_url, make_settings, monkeypatch, x_fake):
    settings, factory = _setup(store_url, make_settings, monkeypatch, x_fake, "x")
    x_fake.fail_next("500", count=3)
    for attempt in range(1, 4):
        with transaction(factory) as s:  # make the retry due now
            s.execute(update(Delivery).values(due_at=utcnow()))
        outcome = _once(settings, factory)
        assert outcome.state == ("planned" if attempt < 3 else "failed")
    assert len(x_fake.calls("POST", "^/2/tweets$")) == 3


def test_timeout_on_x_is_unknown_and_never_retried(store_url, make_settings, monkeypatch, x_fake):
    settings, factory = _setup(store_url, make_settings, monkeypatch, x_fake, "x")
    x_fake.fail_next("stall", delay=4)
    assert _once(settings, factory).state == "unknown"
    assert claim_due(factory, utcnow() + timedelta(days=1), limit=5, ttl=timedelta(minutes=1)) == []


def test_timeout_on_mastodon_is_retried_only_while_the_key_is_remembered(store_url, make_settings, monkeypatch,
                                                                         masto_fake):
    settings, factory = _setup(store_url, make_settings, monkeypatch, masto_fake, "mastodon")
    masto_fake.fail_next("stall", delay=4)
    assert _once(settings, factory).state == "planned"  # same Idempotency-Key next time
    # The first attempt was long ago: Mastodon has forgotten the key, a retry could post twice.
    with transaction(factory) as s:
        s.execute(update(Event).values(at=utcnow() - timedelta(hours=2)))
        s.execute(update(Delivery).values(due_at=utcnow()))
    masto_fake.fail_next("stall", delay=4)
    assert _once(settings, factory).state == "unknown"


def test_shared_rate_limit_defers_instead_of_sending(store_url, make_settings, monkeypatch, x_fake):
    settings, factory = _setup(store_url, make_settings, monkeypatch, x_fake, "x", rate_limit="1/1h")
    limiter = MemoryLimiter()
    assert _once(settings, factory, limiter).state == "sent"
    with transaction(factory) as s:
        s.add(Delivery(key=uuid.uuid4().hex, subject="t:second", channel="x", kind="x", provider="x",
                       state="planned", due_at=utcnow(), payload={"text": "Second"}))
    outcome = _once(settings, factory, limiter)
    assert outcome.state == "deferred"
    with transaction(factory) as s:
        second = s.query(Delivery).filter_by(subject="t:second").one()
    assert second.state == "planned" and second.due_at > utcnow() + timedelta(minutes=50)
    assert len(x_fake.calls("POST", "^/2/tweets$")) == 1


def test_a_send_that_outlives_its_lease_is_recorded_when_it_completes(store_url, make_settings, monkeypatch,
                                                                     x_fake):
    settings, factory = _setup(store_url, make_settings, monkeypatch, x_fake, "x")
    [claim] = claim_due(factory, utcnow(), limit=1, ttl=timedelta(minutes=5))
    # The reaper runs while the worker is still inside the provider call (simulated by reaping
    # far in the future after the claim has become 'sending').
    x_fake.fail_next("stall", delay=0.5)  # records the request, then holds it half a second
    import threading

    def reap_midway():
        # Reap only once the request is inside the provider (the row is 'sending' by then).
        import time
        deadline = time.monotonic() + 30
        while not x_fake.calls("POST", "^/2/tweets$") and time.monotonic() < deadline:
            time.sleep(0.01)
        reap_expired(factory, utcnow() + timedelta(hours=1))

    reaper = threading.Thread(target=reap_midway)
    reaper.start()
    outcome = deliver(factory, settings, claim.delivery_id, claim.token, limiter=MemoryLimiter())
    reaper.join()
    assert outcome.state == "sent"
    assert _row(factory).state == "sent"  # the truth, once known, replaces 'unknown'


def test_duplicate_on_a_retry_means_the_first_attempt_went_out(store_url, make_settings, monkeypatch, x_fake):
    settings, factory = _setup(store_url, make_settings, monkeypatch, x_fake, "x")
    x_fake.fail_next("500")
    assert _once(settings, factory).state == "planned"
    # The 500 came back although X had posted it: the retry is refused as duplicate content.
    x_fake.posts["1"] = {"id": "1", "text": "Hello", "body": {"text": "Hello"}}
    with transaction(factory) as s:
        s.execute(update(Delivery).values(due_at=utcnow()))
    assert _once(settings, factory).state == "unknown"
    row = _row(factory)
    assert row.error_class == "duplicate" and "earlier attempt" in row.last_error


def test_a_gateway_timeout_on_a_create_that_cannot_be_looked_up_is_unknown(store_url, make_settings,
                                                                           monkeypatch):
    # X has neither an idempotency key nor a lookup: a 504 on the create may have posted, so a
    # person decides (Pinterest, which can be looked up, is retried: test_providers_contracts.py).
    with start_fake("x") as (_url, fake):
        settings, factory = _setup(store_url, make_settings, monkeypatch, fake, "x")
        with transaction(factory) as s:
            s.execute(update(Delivery).values(payload={"text": "A new post https://harborwellness.example/p/"}))
        fake.fail_next("504")
        assert _once(settings, factory).state == "unknown"


def test_channels_naming_the_same_credential_share_one_rate_limit_account(make_settings):
    """account_key: option `account`, else the credential's variable name (token_env,
    page_token_env, api_key_env, server_token_env), else the channel's name; per provider."""
    from syndicate.engine.ratelimit import account_key

    def channel(provider, **options):
        return {"kind": "email", "provider": provider, "options": options}

    settings = make_settings(channels={
        "news": channel("postmark", server_token_env="PM_TOKEN"),
        "alerts": channel("postmark", server_token_env="PM_TOKEN"),
        "other": channel("postmark", server_token_env="PM_OTHER"),
        "mg1": channel("mailgun", api_key_env="MG_KEY", domain="a.example"),
        "mg2": channel("mailgun", api_key_env="MG_KEY", domain="b.example"),
        "sg": channel("sendgrid", api_key_env="MG_KEY"),
        "named": channel("mailgun", api_key_env="MG_KEY", account="shared"),
        "bare": channel("smtp", host="127.0.0.1"),
    })
    key = {name: account_key(name, ch) for name, ch in settings.channels.items()}
    assert key["news"] == key["alerts"] == "postmark:PM_TOKEN" != key["other"]
    assert key["mg1"] == key["mg2"] == "mailgun:MG_KEY"
    assert key["sg"] == "sendgrid:MG_KEY"  # another provider: its own limit
    assert key["named"] == "mailgun:shared" and key["bare"] == "smtp:bare"


# ---------------------------------------------------------------- a delivery whose render failed


def test_send_it_again_after_a_failed_render_renders_it_now(make_settings, demo_feed_path):
    """Newcomer probe, defect 5: "send it again" on a delivery whose render failed looped on a
    KeyError (the provider got an empty payload). It is rendered now, as the planner would."""
    from sqlalchemy import select

    from syndicate.engine import actions
    from syndicate.engine.runner import ledger, run_once
    from syndicate.ledger.models import Post

    feeds = [{"name": "wellness", "url": str(demo_feed_path), "backfill": 5}]
    # No board: what the settings cannot know is missing until the payload is built.
    broken = make_settings(feeds=feeds, channels={"pin": {"kind": "pinterest", "provider": "outbox"}})
    run_once(broken)
    factory = ledger(broken)
    with transaction(factory) as s:
        rows = {title: (d.id, d.state, d.payload) for d, title in
                s.execute(select(Delivery, Post.title).join(Post, Delivery.post_id == Post.id))}
    assert {state for _, state, _ in rows.values()} == {"failed"} and all(p == {} for _, _, p in rows.values())
    # Retried before the settings are fixed: it fails again, with the render's reason, once.
    grounding = next(i for t, (i, _, _) in rows.items() if t.startswith("Five Grounding"))
    actions.resolve(factory, grounding, "retry", "cli:test")
    outcome = run_once(broken).outcomes
    assert [(o.delivery_id, o.state) for o in outcome] == [(grounding, "failed")]
    assert "board_id" in outcome[0].detail and "KeyError" not in outcome[0].detail
    # The settings fixed, every one is sent again: rendered now, and the sensitive one held.
    fixed = make_settings(feeds=feeds, channels={"pin": {"kind": "pinterest", "provider": "outbox",
                                                         "options": {"board_id": "4242"}}})
    for delivery_id, _, _ in rows.values():
        actions.resolve(factory, delivery_id, "retry", "cli:test")
    states = {o.delivery_id: o.state for o in run_once(fixed).outcomes}
    sensitive = next(i for t, (i, _, _) in rows.items() if t.startswith("When a Teen"))
    assert states.pop(sensitive) == "held"
    assert set(states.values()) == {"sent"} and len(states) == 4
    with transaction(factory) as s:
        held = s.get(Delivery, sensitive)
        sent = s.get(Delivery, grounding)
    assert "sensitive topic" in held.hold_reason and held.payload["title"]
    assert sent.payload["board_id"] == "4242"  # stored: what went out is what the desk shows


def test_control_characters_in_a_post_never_reach_an_email_or_a_network(make_settings, tmp_path):
    """Newcomer probe, defect 5: a \\x01 in a title broke the email's render and went to X raw."""
    import email
    import json

    from syndicate.engine.runner import run_once

    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "Blog",
                                "home_page_url": "https://harborwellness.example/", "items": [{
                                    "id": "1", "url": "https://harborwellness.example/2026/11/null/",
                                    "title": "Null\x01control\x07chars\x0bfrom\u2028Word\x9f",
                                    "content_html": "<p>One\x0btwo\x00 three\u2029four\x1b.</p>",
                                    "date_published": "2026-11-24T14:00:00Z"}]}))
    settings = make_settings(feeds=[{"name": "blog", "url": str(feed), "backfill": 1}])
    summary = run_once(settings)
    assert sorted(o.state for o in summary.outcomes) == ["sent", "sent"] and summary.plan.failed == 0
    controls = {chr(c) for c in [*range(0, 9), 11, 12, *range(14, 32), *range(127, 160)]} | {"\u2028", "\u2029"}
    (eml,) = (settings.outbox_dir / "newsletter").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "Nullcontrolchars from Word"
    body = message.get_body(("plain",)).get_content()
    assert "One two three four." in body and not controls & set(body)
    (tweet,) = (settings.outbox_dir / "x").glob("*.json")
    text = json.loads(tweet.read_text())["request"]["text"]
    assert text.startswith("Nullcontrolchars from Word") and not controls & set(text)

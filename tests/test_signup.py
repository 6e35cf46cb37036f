"""Public signup (web/signup.py, audience/signup.py): the pasted form from the blog's origin
(CORS preflight and the real POST) and from any other origin (refused), the abuse rules, no
enumeration, and coming back after unsubscribing."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from test_smtp_support import SECRET

from syndicate.audience import signup, subscribers
from syndicate.engine.runner import ledger
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Subscriber
from syndicate.web import create_app

BLOG = "https://harborwellness.example"  # site.url
OTHER = "https://evil.example"


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)


@pytest.fixture
def settings(make_settings):
    return make_settings(channels={"newsletter": {"kind": "email", "options": {"audience": "subscribers"}}},
                         audience={"limits": "memory", "signup": {"min_fill_seconds": 0}})


@pytest.fixture
def client(settings):
    return create_app(settings).test_client()


def notices(settings) -> list:
    return sorted((settings.outbox_dir / "newsletter" / "notices").glob("confirm-*.eml"))


def status_of(settings, email: str) -> str | None:
    with transaction(ledger(settings)) as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email == email))


def snippet_signup(client, origin: str, email: str):
    """What the README's snippet does in a browser on ORIGIN: a ticket, then a JSON POST."""
    ticket = client.get("/subscribe/ticket", headers={"Origin": origin})
    body = {"email": email, "t": ticket.json["ticket"] if ticket.status_code == 200 else "", "website": ""}
    return ticket, client.post("/subscribe", json=body, headers={"Origin": origin})


def test_the_snippet_works_from_the_sites_origin(client, settings):
    pre = client.options("/subscribe", headers={"Origin": BLOG, "Access-Control-Request-Method": "POST",
                                                "Access-Control-Request-Headers": "content-type"})
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == BLOG
    assert "content-type" in pre.headers["Access-Control-Allow-Headers"].lower()
    ticket, answer = snippet_signup(client, BLOG, "Reader@Example.org")
    assert ticket.headers["Access-Control-Allow-Origin"] == BLOG
    assert answer.status_code == 200 and answer.json["ok"] is True
    assert answer.headers["Access-Control-Allow-Origin"] == BLOG
    assert status_of(settings, "reader@example.org") == "pending"  # never mailed until confirmed
    assert len(notices(settings)) == 1


def test_the_snippet_is_refused_from_any_other_origin(client, settings):
    pre = client.options("/subscribe", headers={"Origin": OTHER, "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 403 and "Access-Control-Allow-Origin" not in pre.headers
    ticket, answer = snippet_signup(client, OTHER, "reader@example.org")
    assert ticket.status_code == 403 and "Access-Control-Allow-Origin" not in ticket.headers
    assert answer.status_code == 403 and "Access-Control-Allow-Origin" not in answer.headers
    # A plain HTML form needs no preflight: its POST is refused by its Origin all the same.
    form = client.post("/subscribe", data={"email": "reader@example.org", "t": signup.ticket(client.application
                       .extensions["syndicate"]["settings"])}, headers={"Origin": OTHER})
    assert form.status_code == 403
    assert status_of(settings, "reader@example.org") is None and notices(settings) == []


def test_bad_input_and_bots(client, settings):
    page = client.post("/subscribe", data={"email": "not an address", "t": signup.ticket(settings)})
    assert page.status_code == 400 and "does not look like an email address" in page.text
    assert 'aria-invalid="true"' in page.text
    bot = client.post("/subscribe", data={"email": "bot@example.org", "website": "http://spam",
                                          "t": signup.ticket(settings)})
    assert bot.status_code == 200 and "Check your inbox" in bot.text  # the same answer, nothing done
    no_ticket = client.post("/subscribe", data={"email": "quick@example.org"})
    assert "press Subscribe once more" in no_ticket.text and 'name="t" value="' in no_ticket.text
    assert status_of(settings, "bot@example.org") is None and status_of(settings, "quick@example.org") is None


def test_minimum_fill_time(settings):
    slow = settings.model_copy(update={"audience": settings.audience.model_copy(update={
        "signup": settings.audience.signup.model_copy(update={"min_fill_seconds": 3.0})})})
    with pytest.raises(signup.NeedsTicket):
        signup.check_ticket(slow, signup.ticket(slow, now=time.time() - 1))
    signup.check_ticket(slow, signup.ticket(slow, now=time.time() - 4))


def test_no_enumeration_one_confirmation_per_ten_minutes_and_rate_limits(client, settings):
    subscribers.import_rows(ledger(settings), settings, [subscribers.Row(1, "active@example.org")], "test")
    answers = set()
    for email in ("active@example.org", "new@example.org", "new@example.org"):
        answer = client.post("/subscribe", json={"email": email, "t": signup.ticket(settings)})
        answers.add((answer.status_code, answer.json["message"]))
    assert len(answers) == 1  # active, new, and new again: one answer
    assert len(notices(settings)) == 1  # the new address once; the active one not at all
    for _ in range(3):
        client.post("/subscribe", json={"email": "new@example.org", "t": signup.ticket(settings)})
    limited = client.post("/subscribe", json={"email": "new@example.org", "t": signup.ticket(settings)})
    assert limited.status_code == 429 and "Too many signups for this address" in limited.json["error"]


def test_coming_back_after_unsubscribing_but_never_after_a_bounce(client, settings):
    factory = ledger(settings)
    subscribers.import_rows(factory, settings, [subscribers.Row(1, "left@example.org"),
                                                subscribers.Row(2, "bounced@example.org", status="bounced")], "t")
    subscribers.suppress(factory, "left@example.org", "unsubscribed (one-click)")
    for email in ("left@example.org", "bounced@example.org"):
        client.post("/subscribe", json={"email": email, "t": signup.ticket(settings)})
    assert [p.name.split("-", 2)[2] for p in notices(settings)] == ["left@example.org.eml"]
    token = subscribers.confirm_token(settings, "left@example.org")
    assert client.get(f"/confirm/{token}").status_code == 200
    assert status_of(settings, "left@example.org") == "unsubscribed"  # a GET changes nothing
    assert "You are subscribed" in client.post(f"/confirm/{token}").text
    assert status_of(settings, "left@example.org") == "active"
    assert not subscribers.is_suppressed(factory, "left@example.org")
    assert subscribers.is_suppressed(factory, "bounced@example.org")


def test_a_bad_or_expired_link_offers_a_new_one(client):
    page = client.get("/confirm/not-a-token")
    assert page.status_code == 400 and 'href="/subscribe"' in page.text
    page = client.get("/preferences/not-a-token")
    assert page.status_code == 400 and 'href="/subscribe"' in page.text


# -- confirmations through an email API, and a channel that cannot send one ------------------


def test_the_confirmation_goes_through_a_direct_send_api(make_settings, monkeypatch):
    from fakes import start_fake

    from syndicate.engine.notices import send_notice
    from syndicate.ledger.models import Event

    with start_fake("postmark") as (_base, pm):
        for name, value in pm.env().items():
            monkeypatch.setenv(name, value)
        settings = make_settings(channels={"news": {"kind": "email", "provider": "postmark", "options": {
            **pm.options(), "audience": "subscribers"}, "from_address": "news@harborwellness.example"}},
            audience={"limits": "memory", "signup": {"min_fill_seconds": 0, "welcome": True}})
        assert send_notice(ledger(settings), settings, "confirm", "ana@example.org") == "via the Postmark API"
        (sent,) = pm.delivered
        assert sent["to"] == "ana@example.org" and sent["subject"].startswith("Please confirm")
        call, = pm.calls("POST", r"^/email/batch$")
        (message,) = call["json"]
        assert subscribers.confirm_url(settings, "ana@example.org") in message["TextBody"]
        assert message["TrackOpens"] is False and "Headers" in message
        send_notice(ledger(settings), settings, "welcome", "ana@example.org")
        welcome = pm.calls("POST", r"^/email/batch$")[-1]["json"][0]
        assert {h["Name"] for h in welcome["Headers"]} == {"List-Unsubscribe", "List-Unsubscribe-Post"}
        pm.revoke()
        with pytest.raises(Exception, match="Postmark"):
            send_notice(ledger(settings), settings, "confirm", "ben@example.org")
    with transaction(ledger(settings)) as s:
        notes = s.scalars(select(Event.detail).where(Event.action == "notice")).all()
    assert notes == ["confirm via the Postmark API", "welcome via the Postmark API"]


def test_settings_refuse_signup_through_a_campaign_provider(make_settings):
    from syndicate.settings import SettingsError

    chimp = {"kind": "email", "provider": "mailchimp", "options": {"api_key_env": "X", "audience_id": "a1"}}
    with pytest.raises(SettingsError, match=r"audience.signup.enabled: channel 'news' sends through mailchimp, "
                                            r"which cannot mail one confirmation; set audience.signup.channel"):
        make_settings(channels={"news": chimp}, audience={"signup": {"enabled": True}})
    # Left at the default, signup is off rather than broken; test_smtp gives it a way.
    assert make_settings(channels={"news": chimp}).signup_open is False
    client = create_app(make_settings(channels={"news": chimp})).test_client()
    assert client.get("/subscribe").status_code == 404
    smtp = {**chimp, "options": {**chimp["options"], "test_smtp": {"host": "127.0.0.1", "port": 2525}}}
    assert make_settings(channels={"news": smtp}, audience={"signup": {"enabled": True}}).signup_open
    # An SMTP or API channel named for signup is fine.
    both = {"news": chimp, "mail": {"kind": "email", "provider": "outbox"}}
    assert make_settings(channels=both, audience={"signup": {"channel": "mail"}}).signup_open


def test_campaign_providers_are_the_email_providers_that_cannot_mail_one_address():
    from syndicate import options, providers
    from syndicate.providers.batching import DirectSendProvider

    one_address = {n for n in options.EMAIL_PROVIDERS
                   if n == "smtp" or issubclass(providers.get(n), DirectSendProvider)}
    assert set(options.CAMPAIGN_PROVIDERS) == set(options.EMAIL_PROVIDERS) - one_address

"""Mailchimp and Buttondown keep their own lists: `syndicate subscribers sync` reads their
unsubscribed and cleaned (bounced) members back into the one suppression list (local fakes)."""

from __future__ import annotations

import pytest
from fakes import start_fake

from syndicate.audience import subscribers
from syndicate.engine.runner import ledger
from syndicate.ledger.db import transaction
from syndicate.providers.listsync import sync_all


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", "test-secret-0123456789-abcdefghijklmnop")


def _settings(make_settings, monkeypatch, fake, provider):
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    return make_settings(channels={"news": {"kind": "email", "provider": provider, "options": fake.options()}})


def _suppressed(settings, addresses):
    with transaction(ledger(settings)) as s:
        return subscribers.suppressed_among(s, addresses, settings)


def test_mailchimp_unsubscribed_and_cleaned_members_are_suppressed(make_settings, monkeypatch):
    with start_fake("mailchimp") as (_base, fake):
        fake.members = [{"email_address": "ana@example.org", "status": "unsubscribed"},
                        {"email_address": "ben@example.org", "status": "cleaned"},
                        {"email_address": "cleo@example.org", "status": "subscribed"}]
        settings = _settings(make_settings, monkeypatch, fake, "mailchimp")
        report, = sync_all(ledger(settings), settings)
        assert (report.read, report.new, report.error) == (2, 2, None)
        again, = sync_all(ledger(settings), settings)
        assert (again.read, again.new) == (2, 0)  # read twice: one event each
    assert _suppressed(settings, ["ana@example.org", "ben@example.org", "cleo@example.org"]) == {
        "ana@example.org", "ben@example.org"}


def test_buttondown_types_are_read_page_by_page(make_settings, monkeypatch):
    with start_fake("buttondown") as (_base, fake):
        fake.subscribers = [{"email_address": f"u{i}@example.org", "type": "unsubscribed"} for i in range(3)] + [
            {"email_address": "kim@example.org", "type": "undeliverable"},
            {"email_address": "lu@example.org", "type": "complained"},
            {"email_address": "mo@example.org", "type": "regular"}]
        settings = _settings(make_settings, monkeypatch, fake, "buttondown")
        report, = sync_all(ledger(settings), settings)
        assert (report.read, report.error) == (5, None)
    assert _suppressed(settings, ["u0@example.org", "u2@example.org", "kim@example.org", "lu@example.org",
                                  "mo@example.org"]) == {"u0@example.org", "u2@example.org", "kim@example.org",
                                                         "lu@example.org"}


def test_a_revoked_key_is_reported_not_raised(make_settings, monkeypatch):
    with start_fake("mailchimp") as (_base, fake):
        settings = _settings(make_settings, monkeypatch, fake, "mailchimp")
        fake.revoke()
        report, = sync_all(ledger(settings), settings)
        assert report.error and fake.API_KEY not in report.error

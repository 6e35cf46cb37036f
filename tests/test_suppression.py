"""One suppression list and one event log (audience/suppression.py), on SQLite and PostgreSQL:
hard bounces and complaints suppress at once, soft bounces after N within M days, a replay is
stored once, an unknown address is recorded and ignored, only staff restore; the import's status
column; export and forget (a keyed hash keeps a forgotten address suppressed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from test_smtp_support import SECRET

from syndicate.audience import privacy, subscribers, suppression
from syndicate.cli import main
from syndicate.engine.runner import ledger
from syndicate.ledger.db import transaction
from syndicate.ledger.models import DeliverabilityEvent, Subscriber, Suppression

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)


@pytest.fixture
def settings(make_settings, store_url):
    settings = make_settings(store_url=store_url, deliverability={"soft_bounce_limit": 3, "soft_bounce_days": 30})
    if store_url.startswith("postgresql"):
        with transaction(ledger(settings)) as s:
            s.execute(text("TRUNCATE subscribers, suppressions, deliverability_events RESTART IDENTITY CASCADE"))
    subscribers.import_rows(ledger(settings), settings, [subscribers.Row(i, a) for i, a in enumerate(
        ["ana@example.org", "ben@example.org", "cleo@example.org", "dev@example.org"], 1)], "test")
    return settings


def _record(settings, **kw) -> bool:
    with transaction(ledger(settings)) as s:
        return suppression.record_event(s, settings, **kw)


def _suppressed(settings, address) -> bool:
    with transaction(ledger(settings)) as s:
        return suppression.is_suppressed(s, address, settings)


def _status(settings, address):
    with transaction(ledger(settings)) as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email == address))


def test_hard_bounce_and_complaint_suppress_at_once(settings):
    assert _record(settings, provider="ses", kind="bounce", subtype="hard", email="Ana@Example.org",
                   diagnostic="550 5.1.1 user unknown", event_id="m-1")
    assert _suppressed(settings, "ana@example.org") and _status(settings, "ana@example.org") == "bounced"
    assert _record(settings, provider="sendgrid", kind="complaint", email="ben@example.org", event_id="e-9")
    assert _suppressed(settings, "ben@example.org") and _status(settings, "ben@example.org") == "complained"
    assert not _suppressed(settings, "cleo@example.org")
    with transaction(ledger(settings)) as s:
        assert subscribers.active_recipients(s) == ["cleo@example.org", "dev@example.org"]


def test_a_replay_is_stored_once(settings):
    event = dict(provider="postmark", kind="bounce", subtype="soft", email="cleo@example.org", event_id="42")
    assert _record(settings, **event)
    assert not _record(settings, **event)
    assert not _record(settings, **event)
    with transaction(ledger(settings)) as s:
        assert s.scalar(select(func.count()).select_from(DeliverabilityEvent)) == 1
    assert not _suppressed(settings, "cleo@example.org")  # one soft bounce is not three
    # Without an id from the service, the same report (same time) is still one event.
    assert _record(settings, provider="smtp", kind="bounce", subtype="soft", email="dev@example.org", occurred_at=T0)
    assert not _record(settings, provider="smtp", kind="bounce", subtype="soft", email="dev@example.org",
                       occurred_at=T0)


def test_soft_bounces_suppress_after_the_limit_within_the_window(settings):
    for n, days_ago in enumerate((90, 60, 5)):  # two are older than 30 days
        _record(settings, provider="mailgun", kind="bounce", subtype="soft", email="cleo@example.org",
                event_id=f"c{n}", occurred_at=T0 - timedelta(days=days_ago))
    assert not _suppressed(settings, "cleo@example.org")
    _record(settings, provider="mailgun", kind="bounce", subtype="soft", email="cleo@example.org", event_id="c3",
            occurred_at=T0 - timedelta(days=2))
    assert not _suppressed(settings, "cleo@example.org")
    _record(settings, provider="ses", kind="bounce", subtype="transient", email="cleo@example.org", event_id="c4",
            occurred_at=T0)  # another service's word for soft
    assert _suppressed(settings, "cleo@example.org")
    with transaction(ledger(settings)) as s:
        reason = s.scalar(select(Suppression.reason).where(Suppression.email == "cleo@example.org"))
    assert reason.startswith("3 soft bounces within 30 days")


def test_an_unknown_address_is_recorded_and_ignored(settings):
    assert _record(settings, provider="ses", kind="complaint", email="stranger@example.net", event_id="x")
    assert not _suppressed(settings, "stranger@example.net")
    with transaction(ledger(settings)) as s:
        assert s.scalar(select(DeliverabilityEvent.email)) == "stranger@example.net"


def test_only_staff_restore_and_imports_keep_suppressed_people_out(settings, tmp_path, capsys):
    _record(settings, provider="smtp", kind="bounce", subtype="hard", email="ana@example.org", event_id="b")
    csv = tmp_path / "again.csv"
    csv.write_text("Email Address,First Name,Last Name,Status\nana@example.org,Ana,Ng,subscribed\n"
                   "eve@example.org,Eve,,cleaned\nfay@example.org,Fay,,unsubscribed\ngus@example.org,Gus,,pending\n"
                   "hal@example.org,Hal,,complained\nivy@example.org,Ivy,,subscribed\n")
    report = subscribers.import_csv(ledger(settings), settings, csv)
    assert (report.suppressed, report.marked, report.added, report.pending) == (1, 3, 2, 1)
    assert _suppressed(settings, "ana@example.org")
    for address, status in (("eve@example.org", "bounced"), ("fay@example.org", "unsubscribed"),
                            ("hal@example.org", "complained")):
        assert _suppressed(settings, address) and _status(settings, address) == status
    assert _status(settings, "gus@example.org") == "pending" and _status(settings, "ivy@example.org") == "active"
    # A second hard bounce, a re-import: still suppressed. Only `subscribers restore` lifts it.
    _record(settings, provider="ses", kind="bounce", subtype="hard", email="ana@example.org", event_id="b2")
    config = _config(settings, tmp_path)
    assert main(["--config", config, "subscribers", "restore", "ana@example.org"]) == 0
    assert "suppression lifted" in capsys.readouterr().out
    assert not _suppressed(settings, "ana@example.org") and _status(settings, "ana@example.org") == "active"


def test_buttondown_and_substack_exports(settings, tmp_path):
    buttondown = tmp_path / "buttondown.csv"
    buttondown.write_text("email,subscriber_type,notes\njo@example.org,regular,\nkim@example.org,undeliverable,\n"
                          "lu@example.org,unactivated,\nmo@example.org,removed,\n")
    report = subscribers.import_csv(ledger(settings), settings, buttondown)
    assert (report.added, report.marked, report.pending) == (2, 2, 1)
    assert _status(settings, "kim@example.org") == "bounced" and _status(settings, "mo@example.org") == "unsubscribed"
    substack = tmp_path / "substack.csv"
    substack.write_text("email,active_subscription,expiry,plan,email_disabled,created_at\n"
                        "nia@example.org,false,,,false,2024-01-02\noz@example.org,false,,,true,2024-01-02\n")
    report = subscribers.import_csv(ledger(settings), settings, substack)
    assert (report.added, report.marked) == (1, 1) and _suppressed(settings, "oz@example.org")


def test_export_and_forget(settings, tmp_path, capsys):
    _record(settings, provider="ses", kind="complaint", email="ben@example.org", event_id="c",
            diagnostic="abuse report for ben@example.org")
    config = _config(settings, tmp_path)
    assert main(["--config", config, "subscribers", "export", "ben@example.org", "--json"]) == 0
    held = json.loads(capsys.readouterr().out)
    assert held["subscriber"]["status"] == "complained" and held["events"][0]["kind"] == "complaint"
    assert held["suppression"]["forgotten"] is False
    assert main(["--config", config, "subscribers", "export", "--csv"]) == 0
    assert "ben@example.org,events,kind,complaint" in capsys.readouterr().out

    assert main(["--config", config, "subscribers", "forget", "ben@example.org"]) == 0
    assert "forgotten" in capsys.readouterr().out
    with transaction(ledger(settings)) as s:
        everything = json.dumps(privacy.export(s, settings))
        assert "ben@example.org" not in everything
        assert s.scalar(select(Subscriber).where(Subscriber.email == "ben@example.org")) is None
        assert s.scalar(select(func.count()).select_from(DeliverabilityEvent)) == 1  # kept, under the hash
    assert _suppressed(settings, "ben@example.org") and _suppressed(settings, "BEN@example.org ")
    # A re-import does not bring a forgotten address back.
    report = subscribers.import_rows(ledger(settings), settings, [subscribers.Row(1, "ben@example.org")], "again")
    assert report.suppressed == 1
    assert main(["--config", config, "subscribers", "export", "ben@example.org"]) == 0
    assert json.loads(capsys.readouterr().out)["suppression"]["forgotten"] is True


def test_forget_without_the_key_erases_nothing(settings, tmp_path, monkeypatch):
    monkeypatch.delenv("SYNDICATE_SECRET")
    assert main(["--config", _config(settings, tmp_path), "subscribers", "forget", "cleo@example.org"]) == 2
    assert _status(settings, "cleo@example.org") == "active"


def _config(settings, tmp_path) -> str:
    path = tmp_path / "cli.toml"
    path.write_text(f'[site]\nname = "Harbor"\nurl = "https://harborwellness.example"\n'
                    f'[store]\nurl = "{settings.store_url}"\n')
    return str(path)


def test_status_and_desk_show_rates_and_warn_near_the_limits(settings, tmp_path, capsys):
    from test_desk import PASSWORD, sign_in

    from syndicate.ledger.models import Delivery, RecipientSend, utcnow
    from syndicate.web import auth, create_app

    factory = ledger(settings)
    with transaction(factory) as s:
        s.execute(text("DELETE FROM recipient_sends"))
        s.execute(text("DELETE FROM deliveries"))
    now = utcnow()
    with transaction(factory) as s:
        s.add(Delivery(id=42, key="d-42", subject="post:42", channel="news", kind="email", provider="smtp",
                       state="sent", due_at=now, payload={}, attempts=1, created_at=now, updated_at=now))
    people = [f"r{i:03d}@example.org" for i in range(100)]
    with transaction(factory) as s:
        s.add_all(RecipientSend(delivery_id=42, recipient=a, state="sent", attempts=1) for a in people)
    _record(settings, provider="ses", kind="bounce", subtype="hard", email=people[0], event_id="b0", delivery_id=42)
    _record(settings, provider="ses", kind="bounce", subtype="hard", email=people[1], event_id="b1", delivery_id=42)
    _record(settings, provider="ses", kind="complaint", email=people[2], event_id="c2", delivery_id=42)

    config = _config(settings, tmp_path)
    assert main(["--config", config, "status", "--json"]) == 0
    row, = json.loads(capsys.readouterr().out)
    assert row["deliverability"] == {"sent": 100, "bounced": 2, "complained": 1, "bounce_rate": 0.02,
                                     "complaint_rate": 0.01, "warnings": row["deliverability"]["warnings"]}
    assert len(row["deliverability"]["warnings"]) == 2  # 1 % complaints: over SES's 0.1 % and Gmail's 0.3 %
    assert main(["--config", config, "status"]) == 0
    shown = capsys.readouterr().out
    assert "Deliverability" in shown and "2.00%" in shown and "WARNING channel news: complaint rate 1.00% is over" in shown
    assert "bounce rate" not in shown  # 2 % is not near 5 %

    with transaction(factory) as s:
        s.execute(text("DELETE FROM staff_users"))
    auth.add_user(factory, "ana", PASSWORD)
    client = create_app(settings).test_client()
    sign_in(client)
    page = client.get("/desk/deliverability").get_data(as_text=True)
    assert "1.00 %" in page and "2.00 %" in page and "Amazon SES reviews accounts at 0.1 % complaints" in page
    assert page.count('role="alert"') == 4  # two warnings for the edition, two for the channel

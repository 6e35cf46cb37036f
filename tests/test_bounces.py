"""Bounces: a 5xx to RCPT suppresses the address everywhere; every message goes out with its
own signed bounce address (VERP); DSNs and complaints that come back are read from a real IMAP
server (a private Dovecot) by `syndicate bounces fetch`, mapped back through that address, and
suppress who they are about, each once."""

from __future__ import annotations

import imaplib
from email.utils import make_msgid

import pytest
from imapserver import PASSWORD, USER, Dovecot
from sqlalchemy import select, text
from test_smtp_support import PUBLIC_URL, SECRET, Recorder, SmtpServer, smtp_channel

from syndicate.audience import bounces, subscribers, suppression
from syndicate.engine.runner import ledger, run_once
from syndicate.ledger.db import transaction
from syndicate.ledger.models import DeliverabilityEvent, Subscriber
from syndicate.providers import bouncebox
from syndicate.providers.base import AuthExpired
from tests.test_smtp import T0

PEOPLE = ["ana@example.org", "ben@example.org", "cleo@example.org", "dev@example.org", "eli@example.org"]
BASE = "bounces@harborwellness.example"


@pytest.fixture(scope="module")
def dovecot():
    with Dovecot() as server:
        yield server


@pytest.fixture
def build(make_settings, demo_feed_path, monkeypatch, store_url):
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)
    monkeypatch.setenv("BOUNCE_BOX_PASSWORD", PASSWORD)

    def make(port: int, people=PEOPLE, **options):
        if store_url.startswith("postgresql"):  # no subscribers or events left by an earlier test
            with transaction(ledger_for(store_url)) as s:
                s.execute(text("TRUNCATE subscribers, suppressions, recipient_sends, deliverability_events "
                               "RESTART IDENTITY CASCADE"))
        settings = make_settings(store_url=store_url,
                                 feeds=[{"name": "wellness", "url": str(demo_feed_path), "backfill": 1}],
                                 channels={"news": smtp_channel(port, **options)}, web={"public_url": PUBLIC_URL})
        subscribers.import_rows(ledger(settings), settings,
                                [subscribers.Row(i, a) for i, a in enumerate(people, 1)], source="test")
        return settings

    return make


def ledger_for(url):
    from syndicate.ledger.db import open_ledger

    return open_ledger(url)


def _suppressed(settings, address) -> bool:
    with transaction(ledger(settings)) as s:
        return suppression.is_suppressed(s, address, settings)


def _events(settings, address=None) -> list[DeliverabilityEvent]:
    with transaction(ledger(settings)) as s:
        query = select(DeliverabilityEvent).order_by(DeliverabilityEvent.id)
        if address:
            query = query.where(DeliverabilityEvent.email == address)
        return list(s.scalars(query))


# ---------------------------------------------------------------------------- SMTP refusals


def test_a_5xx_to_rcpt_is_a_hard_bounce_for_every_channel_and_a_policy_refusal_is_not(build):
    handler = Recorder(rcpt_replies={"ben@example.org": ["550 5.1.1 <ben@example.org>: user unknown"],
                                     "cleo@example.org": ["550 5.7.1 relaying denied"],
                                     "dev@example.org": ["452 4.2.2 mailbox full"] * 10})
    with SmtpServer(handler) as server:
        settings = build(server.port)
        run_once(settings, T0)
    assert sorted(handler.counts()) == ["ana@example.org", "eli@example.org"]
    assert _suppressed(settings, "ben@example.org")  # the address does not exist: never again, anywhere
    ben, = _events(settings, "ben@example.org")
    assert (ben.provider, ben.kind, ben.subtype) == ("smtp", "bounce", "hard") and "5.1.1" in ben.diagnostic
    assert ben.delivery_id is not None
    # Refused because of us (a relay that will not relay): stored, nobody suppressed.
    assert not _suppressed(settings, "cleo@example.org")
    assert [(e.kind, e.subtype) for e in _events(settings, "cleo@example.org")] == [("block", "5.7.1")]
    assert not _suppressed(settings, "dev@example.org") and _events(settings, "dev@example.org") == []
    with transaction(ledger(settings)) as s:
        row = s.scalar(select(Subscriber).where(Subscriber.email == "ben@example.org"))
    assert row.status == "bounced"


# ---------------------------------------------------------------------------- VERP


def test_each_message_has_its_own_signed_return_path(build):
    with SmtpServer() as server:
        settings = build(server.port, return_path=BASE)
        run_once(settings, T0)
    senders = {r.rcpt_tos[0]: r.mail_from for r in server.handler.received}
    assert sorted(senders) == PEOPLE and len(set(senders.values())) == len(PEOPLE)
    with transaction(ledger(settings)) as s:
        for person, mail_from in senders.items():
            local, _, domain = mail_from.partition("@")
            assert domain == "harborwellness.example" and local.startswith("bounces+")
            assert person.split("@")[0] not in local and len(local) <= 64  # opaque, a valid local part
            token = bounces.token_of(BASE, mail_from.upper())  # case does not matter
            delivery_id, recipient = bounces.recipient_of(s, settings, token)
            assert recipient == person and delivery_id
            # A token made up, or moved to another delivery, names nobody.
            d, mac = token.split("-")
            assert bounces.recipient_of(s, settings, f"{d}-{'a' * 16}") is None
            assert bounces.recipient_of(s, settings, f"{int(d) + 1}-{mac}") is None
        # The From header is untouched.
        assert all(r.message["From"].addresses[0].addr_spec == "news@harborwellness.example"
                   for r in server.handler.received)


# ---------------------------------------------------------------------------- reports


def dsn(to: str, final_recipient: str, action: str, status: str, diagnostic: str = "",
        original_return_path: str | None = None) -> bytes:
    """A delivery status notification as Postfix writes one (RFC 3464)."""
    boundary = "dsn-boundary-1"
    fields = ("Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Tue, 24 Nov 2026 15:59:58 +0000\r\n\r\n"
              f"Final-Recipient: rfc822; {final_recipient}\r\nOriginal-Recipient: rfc822; {final_recipient}\r\n"
              f"Action: {action}\r\nStatus: {status}\r\nRemote-MTA: dns; mx2.example.net\r\n"
              + (f"Diagnostic-Code: smtp; {diagnostic}\r\n" if diagnostic else "")
              + "Last-Attempt-Date: Tue, 24 Nov 2026 15:59:59 +0000\r\n")
    original = ((f"Return-Path: <{original_return_path}>\r\n" if original_return_path else "")
                + "From: Harbor Wellness <news@harborwellness.example>\r\nSubject: Our newsletter\r\n")
    return ("From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
            f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"Date: Tue, 24 Nov 2026 16:00:00 +0000\r\nMessage-ID: {make_msgid(domain='mx.example.net')}\r\n"
            "MIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.example.net.\r\n"
            f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n{fields}\r\n"
            f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{original}\r\n"
            f"--{boundary}--\r\n").encode()


def arf(original_to: str, original_return_path: str | None) -> bytes:
    """An abuse report from a mailbox provider's feedback loop (RFC 5965), recipient redacted
    in the feedback fields as Yahoo and Microsoft do."""
    boundary = "arf-boundary-7"
    original = ((f"Return-Path: <{original_return_path}>\r\n" if original_return_path else "")
                + f"From: news@harborwellness.example\r\nTo: {original_to}\r\nSubject: Our newsletter\r\n"
                "Message-ID: <1.abc@harborwellness.example>\r\n\r\nHello\r\n")
    return (f"From: feedback@fbl.example.net\r\nTo: abuse@harborwellness.example\r\n"
            f"Subject: FW: Our newsletter\r\nDate: Tue, 24 Nov 2026 17:00:00 +0000\r\n"
            f"Message-ID: {make_msgid(domain='fbl.example.net')}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=feedback-report; boundary=\"{boundary}\"\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
            f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\n"
            "Feedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n"
            "Arrival-Date: Tue, 24 Nov 2026 16:30:00 +0000\r\n\r\n"
            f"--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n{original}\r\n--{boundary}--\r\n").encode()


def _append(data: bytes) -> None:
    conn = imaplib.IMAP4("127.0.0.1", DOVECOT_PORT[0])
    try:
        conn.login(USER, PASSWORD)
        typ, _ = conn.append("INBOX", None, None, data)
        assert typ == "OK"
    finally:
        conn.logout()


def _folder(name: str) -> list[bytes]:
    conn = imaplib.IMAP4("127.0.0.1", DOVECOT_PORT[0])
    try:
        conn.login(USER, PASSWORD)
        conn.create(name)
        typ, _ = conn.select(name)
        assert typ == "OK"
        typ, data = conn.uid("SEARCH", "UNDELETED")
        found = []
        for uid in (data[0] or b"").split():
            typ, msg = conn.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            found.append(msg[0][1].strip())
        return found
    finally:
        conn.logout()


def _empty(dovecot) -> None:
    conn = imaplib.IMAP4("127.0.0.1", dovecot.port)
    try:
        conn.login(USER, PASSWORD)
        for name in ("INBOX", "Processed"):
            typ, count = conn.select(name)
            if typ == "OK" and int(count[0] or 0):
                conn.store("1:*", "+FLAGS", r"(\Deleted)")
                conn.expunge()
    finally:
        conn.logout()


DOVECOT_PORT = [0]


@pytest.fixture
def box(dovecot):
    DOVECOT_PORT[0] = dovecot.port
    _empty(dovecot)
    yield dovecot
    _empty(dovecot)


def _mailbox_options(dovecot, **more) -> dict:
    return {"return_path": BASE, "bounce_imap_host": "127.0.0.1", "bounce_imap_port": dovecot.port,
            "bounce_imap_security": "none", "bounce_imap_user": USER,
            "bounce_imap_password_env": "BOUNCE_BOX_PASSWORD", **more}


def test_reports_in_the_mailbox_suppress_who_they_are_about_once(build, box, monkeypatch, capsys):
    with SmtpServer() as server:
        settings = build(server.port, **_mailbox_options(box, bounce_imap_done="Processed"))
        run_once(settings, T0)
    verp = {r.rcpt_tos[0]: r.mail_from for r in server.handler.received}
    # ana's mailbox forwards to an address that no longer exists: the DSN names the forward
    # target, and the return path it came back to names ana. Delivered into the Maildir.
    box.deliver(dsn(verp["ana@example.org"], "ana.old@forwarded.example", "failed", "5.1.1",
                    "550 5.1.1 <ana.old@forwarded.example>: Recipient address rejected: User unknown"))
    # ben: delayed (mailbox full), a soft bounce: counted, not yet suppressed.
    _append(dsn(verp["ben@example.org"], "ben@example.org", "delayed", "4.2.2", "452 4.2.2 Mailbox full"))
    # cleo complained through a feedback loop: the report comes to abuse@, the quoted original
    # still carries its return path.
    _append(arf("redacted@example.org", verp["cleo@example.org"]))
    # dev: a DSN to the plain bounce address (no token): the report's own recipient decides.
    _append(dsn(BASE, "dev@example.org", "failed", "5.1.1", "550 5.1.1 no such user"))
    # eli: blocked as spam (5.7.1): about us, not eli's address.
    _append(dsn(verp["eli@example.org"], "eli@example.org", "failed", "5.7.1", "554 5.7.1 rejected as spam"))
    # Someone's out-of-office reply: not a report, left alone.
    _append(b"From: someone@example.org\r\nTo: " + verp["ben@example.org"].encode()
            + b"\r\nSubject: Out of office\r\n\r\nI am away.\r\n")

    from syndicate.cli import main

    monkeypatch.setattr("syndicate.cli.email.load_settings", lambda args: settings)
    assert main(["bounces", "fetch"]) == 0
    out = capsys.readouterr().out
    assert "news: 6 read, 5 reports, 5 new events" in out and "1 not reports (left)" in out

    assert _suppressed(settings, "ana@example.org") and not _suppressed(settings, "ana.old@forwarded.example")
    ana, = _events(settings, "ana@example.org")
    assert (ana.provider, ana.kind, ana.subtype) == ("smtp-dsn", "bounce", "hard") and ana.delivery_id
    assert not _suppressed(settings, "ben@example.org")
    assert [(e.kind, e.subtype) for e in _events(settings, "ben@example.org")] == [("bounce", "soft")]
    assert _suppressed(settings, "cleo@example.org")
    assert [(e.provider, e.kind) for e in _events(settings, "cleo@example.org")] == [("smtp-arf", "complaint")]
    assert _suppressed(settings, "dev@example.org")
    assert not _suppressed(settings, "eli@example.org")
    assert [e.kind for e in _events(settings, "eli@example.org")] == ["block"]
    statuses = {r.email: r.status for r in subscribers.list_subscribers(ledger(settings))}
    assert statuses["ana@example.org"] == "bounced" and statuses["cleo@example.org"] == "complained"

    # Handled reports were moved; the auto-reply stays in the inbox.
    assert _folder("INBOX") == [b"Subject: Out of office"]
    assert len(_folder("Processed")) == 5
    # Read again: nothing new; a second report about ben is a second soft bounce.
    assert bouncebox.fetch(settings, "news").read == 0
    _append(dsn(verp["ben@example.org"], "ben@example.org", "delayed", "4.2.2", "452 4.2.2 Mailbox full"))
    fetched = bouncebox.fetch(settings, "news")
    assert (fetched.reports, fetched.recorded) == (1, 1)
    assert len(_events(settings, "ben@example.org")) == 2 and not _suppressed(settings, "ben@example.org")


def test_the_same_report_read_twice_is_one_event(build, box):
    with SmtpServer() as server:
        settings = build(server.port, people=["ana@example.org"], **_mailbox_options(box))
        run_once(settings, T0)
    report = dsn(server.handler.received[0].mail_from, "ana@example.org", "failed", "5.1.1")
    _append(report)
    _append(report)  # the MTA sent it twice (or a crash came between the commit and the delete)
    fetched = bouncebox.fetch(settings, "news")
    assert (fetched.reports, fetched.recorded, fetched.repeated) == (2, 1, 1)
    assert len(_events(settings, "ana@example.org")) == 1
    assert _folder("INBOX") == []  # no bounce_imap_done: handled reports are deleted


def test_a_wrong_password_is_auth_expired_and_a_missing_one_names_the_variable(build, box, monkeypatch):
    settings = build(1, **_mailbox_options(box))
    monkeypatch.setenv("BOUNCE_BOX_PASSWORD", "wrong")
    with pytest.raises(AuthExpired, match="login refused"):
        bouncebox.fetch(settings, "news")
    monkeypatch.delenv("BOUNCE_BOX_PASSWORD")
    with pytest.raises(AuthExpired, match="BOUNCE_BOX_PASSWORD is not set"):
        bouncebox.fetch(settings, "news")


@pytest.mark.parametrize("status, code, text, expected", [
    ("5.1.1", 550, "user unknown", ("bounce", "hard")),
    ("5.2.1", 550, "mailbox disabled", ("bounce", "hard")),
    ("5.2.2", 552, "mailbox full", ("bounce", "soft")),
    ("4.4.7", None, "", ("bounce", "soft")),
    ("5.7.1", 554, "spam", ("block", "5.7.1")),
    (None, 550, "No such user here", ("bounce", "hard")),
    (None, 550, "Relaying denied", ("block", "550")),
    (None, 554, "Transaction failed", ("block", "554")),
])
def test_classify(status, code, text, expected):
    assert bounces.classify(status, code, text) == expected


def test_beat_reads_the_bounce_mailboxes_only_where_there_is_one(build, box):
    from workers.app import make_app

    with_box = make_app(build(1, **_mailbox_options(box))).conf.beat_schedule
    assert with_box["bounces"]["task"] == "syndicate.fetch_bounces"
    assert "bounces" not in make_app(build(1)).conf.beat_schedule


def test_reading_every_mailbox_survives_one_it_cannot_read(build, box, monkeypatch):
    """What beat's task (and the embedded runner's polling pass) calls."""
    with SmtpServer() as server:
        settings = build(server.port, people=["ana@example.org"], **_mailbox_options(box))
        run_once(settings, T0)
    _append(dsn(server.handler.received[0].mail_from, "ana@example.org", "failed", "5.1.1"))
    assert [f.reports for f in bouncebox.fetch_all(settings)] == [1]
    assert _suppressed(settings, "ana@example.org") and _folder("INBOX") == []
    monkeypatch.setenv("BOUNCE_BOX_PASSWORD", "wrong")
    assert bouncebox.fetch_all(settings) == []  # logged, not raised

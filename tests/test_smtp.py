"""The SMTP provider against a real SMTP server (aiosmtpd): one message per recipient, RFC 8058
headers with signed tokens, suppressions, error mapping, and batches interrupted and resumed
without anyone getting a second copy."""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from test_smtp_support import PUBLIC_URL, SECRET, Recorder, SmtpServer, free_port, smtp_channel, wait_for

from syndicate.audience import subscribers
from syndicate.email.recipients import recipient_report
from syndicate.engine.actions import cancel, resolve, resolve_recipients
from syndicate.engine.dispatch import reap_expired
from syndicate.engine.runner import ledger, run_once
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery
from tests.conftest import REPO

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

T0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # after the demo feed's newest post
PEOPLE = ["ana@example.org", "ben@example.org", "cleo@example.org", "dev@example.org", "eli@example.org"]


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)


@pytest.fixture
def email_settings(make_settings, demo_feed_path, store_url):
    """Settings builder: the demo feed (its newest post sent on the first poll) to an SMTP channel."""

    def build(port: int, run: dict | None = None, **options):
        return make_settings(store_url=store_url, feeds=[{"name": "wellness", "url": str(demo_feed_path),
                                                          "backfill": 1}],
                             channels={"news": smtp_channel(port, **options)}, web={"public_url": PUBLIC_URL},
                             **({"run": run} if run else {}))

    return build


@pytest.fixture
def store_url(store_url):
    """The ledger on SQLite and PostgreSQL, without subscribers left from an earlier test."""
    if store_url.startswith("postgresql"):
        factory = ledger_for(store_url)
        with factory() as s, s.begin():
            s.execute(text("TRUNCATE subscribers, suppressions, recipient_sends RESTART IDENTITY CASCADE"))
    return store_url


def ledger_for(url):
    from syndicate.ledger.db import open_ledger

    return open_ledger(url)


def _subscribe(settings, addresses):
    rows = [subscribers.Row(i, subscribers.normalize(a)) for i, a in enumerate(addresses, 1)]
    return subscribers.import_rows(ledger(settings), settings, rows, source="test")


def _delivery(settings) -> Delivery:
    with transaction(ledger(settings)) as s:
        return s.scalars(select(Delivery).where(Delivery.channel == "news")).one()


def _states(settings) -> dict[str, str]:
    d = _delivery(settings)
    return {r.recipient: r.state for r in recipient_report(ledger(settings), d.id)}


def test_one_message_per_recipient_with_signed_one_click_headers(email_settings):
    with SmtpServer() as server:
        settings = email_settings(server.port)
        _subscribe(settings, PEOPLE[:3] + ["gone@example.org"])
        subscribers.suppress(ledger(settings), "gone@example.org", "unsubscribed (test)")
        run_once(settings, T0)
    got = server.handler.received
    assert sorted(r.rcpt_tos[0] for r in got) == PEOPLE[:3]  # the suppressed address is skipped
    assert all(len(r.rcpt_tos) == 1 for r in got)  # one transaction, one recipient
    assert len(server.handler.sessions) == 1  # one connection for the whole batch
    message_ids = set()
    for r in got:
        msg, rcpt = r.message, r.rcpt_tos[0]
        assert r.mail_from == "news@harborwellness.example"
        assert msg["To"] == rcpt and msg["From"].addresses[0].addr_spec == "news@harborwellness.example"
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        targets = re.findall(r"<([^>]+)>", msg["List-Unsubscribe"])
        https = next(t for t in targets if t.startswith("https://"))
        mailto = next(t for t in targets if t.startswith("mailto:"))
        assert https.startswith(f"{PUBLIC_URL}/unsubscribe/")
        token = https.rsplit("/", 1)[1]
        assert subscribers.read_unsubscribe_token(settings, token) == rcpt  # signed for this recipient
        assert mailto.startswith("mailto:unsubscribe@harborwellness.example?subject=unsubscribe%20")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        html = msg.get_body(("html",)).get_content()
        plain = msg.get_body(("plain",)).get_content()
        assert f'href="{https}"' in html and https in plain  # the visible link is theirs too
        assert "{token}" not in html and "{token}" not in plain and "{token}" not in str(msg["List-Unsubscribe"])
        message_ids.add(msg["Message-ID"])
    assert len(message_ids) == 3
    assert _delivery(settings).state == "sent"
    assert set(_states(settings).values()) == {"sent"}


def test_to_list_when_no_audience_and_suppression_applies_there_too(email_settings):
    with SmtpServer() as server:
        settings = email_settings(server.port, audience="to")
        settings = settings.model_copy(update={"channels": {"news": settings.channels["news"].model_copy(
            update={"to": ["Staff@Example.org", "staff@example.org", "blocked@example.org"]})}})
        subscribers.suppress(ledger(settings), "blocked@example.org", "test")
        run_once(settings, T0)
    assert server.handler.counts() == {"staff@example.org": 1}  # normalized, once, suppressed skipped


def test_connection_dropped_after_the_content_then_resumed_without_a_second_copy(email_settings):
    handler = Recorder(drop_after_data={PEOPLE[1]})
    with SmtpServer(handler) as server:
        settings = email_settings(server.port)
        _subscribe(settings, PEOPLE)
        run_once(settings, T0)
        first = _delivery(settings)
        # Outcome unknown for ben: never resent; the delivery goes back for the rest, who were
        # claimed with him and not reached (deferred: their content never went out).
        assert first.state == "planned" and first.error_class == "unknown"
        assert _states(settings) == {PEOPLE[0]: "sent", PEOPLE[1]: "unknown",
                                     **dict.fromkeys(PEOPLE[2:], "deferred")}
        run_once(settings, first.due_at + timedelta(seconds=1))
    assert handler.counts() == {p: 1 for p in PEOPLE}
    d = _delivery(settings)
    # Not `sent`: ben may not have it. The delivery waits for a person, with ben named.
    assert d.state == "unknown" and PEOPLE[1] in d.last_error and "1 recipients may or may not" in d.last_error
    assert _states(settings)[PEOPLE[1]] == "unknown"  # reported, not resent
    # The person finds ben's message in the server's log: settled as sent, the delivery is sent.
    done = resolve_recipients(ledger(settings), d.id, "sent", "cli:test", [PEOPLE[1]])
    assert done.recipients == [PEOPLE[1]] and done.delivery.state == "sent"
    assert _states(settings) == dict.fromkeys(PEOPLE, "sent")
    assert handler.counts() == {p: 1 for p in PEOPLE}


def test_4xx_defers_one_recipient_and_the_retry_sends_it_once(email_settings):
    handler = Recorder(rcpt_replies={PEOPLE[1]: ["450 4.2.1 mailbox busy, try later"]})
    with SmtpServer(handler) as server:
        settings = email_settings(server.port)
        _subscribe(settings, PEOPLE[:3])
        run_once(settings, T0)
        first = _delivery(settings)
        assert first.state == "planned" and first.error_class == "retryable"
        assert _states(settings) == {PEOPLE[0]: "sent", PEOPLE[1]: "deferred", PEOPLE[2]: "sent"}
        run_once(settings, first.due_at + timedelta(seconds=1))
    assert handler.counts() == {p: 1 for p in PEOPLE[:3]}
    assert _delivery(settings).state == "sent"


def test_5xx_fails_that_recipient_only(email_settings):
    handler = Recorder(rcpt_replies={PEOPLE[1]: ["550 5.1.1 no such user"] * 3})
    with SmtpServer(handler) as server:
        settings = email_settings(server.port)
        _subscribe(settings, PEOPLE[:3])
        run_once(settings, T0)
    assert handler.counts() == {PEOPLE[0]: 1, PEOPLE[2]: 1}
    assert _delivery(settings).state == "sent"
    records = {r.recipient: r for r in recipient_report(ledger(settings), _delivery(settings).id)}
    assert records[PEOPLE[1]].state == "failed" and records[PEOPLE[1]].code == 550


def test_every_recipient_refused_is_permanent(email_settings):
    handler = Recorder(rcpt_replies={p: ["550 5.7.1 relaying denied"] for p in PEOPLE[:2]})
    with SmtpServer(handler) as server:
        settings = email_settings(server.port)
        _subscribe(settings, PEOPLE[:2])
        run_once(settings, T0)
    assert _delivery(settings).state == "failed" and _delivery(settings).error_class == "permanent"
    assert handler.received == []


def test_wrong_password_is_auth_expired(email_settings, monkeypatch):
    monkeypatch.setenv("SMTP_USER", "news")
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    with SmtpServer(users={"news": "right"}) as server:
        settings = email_settings(server.port, username_env="SMTP_USER", password_env="SMTP_PASSWORD")
        _subscribe(settings, PEOPLE[:2])
        run_once(settings, T0)
        assert _delivery(settings).state == "failed" and _delivery(settings).error_class == "auth"
        assert "authentication refused" in _delivery(settings).last_error
        assert "wrong" not in _delivery(settings).last_error
        assert server.handler.received == []


def test_right_password_sends(email_settings, monkeypatch):
    monkeypatch.setenv("SMTP_USER", "news")
    monkeypatch.setenv("SMTP_PASSWORD", "right")
    with SmtpServer(users={"news": "right"}) as server:
        settings = email_settings(server.port, username_env="SMTP_USER", password_env="SMTP_PASSWORD")
        _subscribe(settings, PEOPLE[:2])
        run_once(settings, T0)
    assert server.handler.counts() == {PEOPLE[0]: 1, PEOPLE[1]: 1}


def test_nobody_listening_is_retryable(email_settings):
    settings = email_settings(free_port())
    _subscribe(settings, PEOPLE[:1])
    run_once(settings, T0)
    d = _delivery(settings)
    assert d.state == "planned" and d.error_class == "retryable" and "cannot connect" in d.last_error


def test_no_signing_key_sends_nothing(email_settings, monkeypatch):
    monkeypatch.delenv("SYNDICATE_SECRET")
    with SmtpServer() as server:
        settings = email_settings(server.port)
        _subscribe(settings, PEOPLE[:2])
        run_once(settings, T0)
    assert server.handler.received == []
    assert _delivery(settings).error_class == "auth" and "SYNDICATE_SECRET" in _delivery(settings).last_error


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_starttls_with_a_verified_certificate(email_settings, tmp_path, monkeypatch):
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SMTP_USER", "news")
    monkeypatch.setenv("SMTP_PASSWORD", "right")
    with SmtpServer(users={"news": "right"}, tls_context=context) as server:
        untrusted = email_settings(server.port, security="starttls", username_env="SMTP_USER",
                                   password_env="SMTP_PASSWORD")
        _subscribe(untrusted, PEOPLE[:1])
        run_once(untrusted, T0)
        assert _delivery(untrusted).state == "failed" and "not trusted" in _delivery(untrusted).last_error
        assert server.handler.received == []
        trusted = email_settings(server.port, security="starttls", ca_file=str(cert), username_env="SMTP_USER",
                                 password_env="SMTP_PASSWORD")
        resolve(ledger(trusted), _delivery(trusted).id, "retry", "test")  # due at the real clock's now
        run_once(trusted, max(T0, datetime.now(UTC)) + timedelta(minutes=1))
    assert server.handler.counts() == {PEOPLE[0]: 1}
    assert _delivery(trusted).state == "sent"


def _settings_file(tmp_path: Path, port: int, store_url: str, feed: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f'''
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
timezone = "America/New_York"
address = "120 Water Street, Portland, ME 04101"

[store]
url = "{store_url}"

[web]
public_url = "{PUBLIC_URL}"

[[feeds]]
name = "wellness"
url = "{feed}"
backfill = 1

[channels.news]
kind = "email"
provider = "smtp"
from_address = "news@harborwellness.example"
options = {{ host = "127.0.0.1", port = {port}, security = "none", timeout = 10, audience = "subscribers" }}
''')
    return path


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9")
def test_process_killed_mid_batch_then_resumed_without_a_second_copy(tmp_path, store_url, demo_feed_path,
                                                                     make_settings):
    """`syndicate run` is killed (-9) while the server holds the 3rd message; the reaper plans
    the delivery again (per-recipient records make that safe); the rest are sent, the held
    recipient is reported as may-have-it, and nobody gets two."""
    handler = Recorder(hold_at=3)
    with SmtpServer(handler) as server:
        config = _settings_file(tmp_path, server.port, store_url, demo_feed_path)
        from syndicate import settings as settings_mod

        settings = settings_mod.load(config)
        _subscribe(settings, PEOPLE)
        env = {**os.environ, "SYNDICATE_SECRET": SECRET}
        proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli", "--config", str(config), "run", "--at",
                                 T0.isoformat()], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        # On PostgreSQL the next recipient's issue commit (with bob's answer) runs while cleo's
        # content is answered (pipelined): wait for it, so the kill comes after it.
        pipelined = store_url.startswith("postgresql")
        try:
            wait_for(handler.held.is_set, 60, "the third message to arrive")
            if pipelined:
                wait_for(lambda: _states(settings).get(PEOPLE[3]) == "issued", 30, "dev's issue to commit")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        handler.release.set()
        # cleo's content went out (issued); dev (issued ahead, or not) and eli were claimed with
        # her and never reached.
        assert _states(settings) == {PEOPLE[0]: "sent", PEOPLE[1]: "sent", PEOPLE[2]: "issued",
                                     PEOPLE[3]: "issued" if pipelined else "sending", PEOPLE[4]: "sending"}
        unknown = PEOPLE[2:4] if pipelined else PEOPLE[2:3]
        # The lease was taken at the real clock (deliver() stamps it), so reap after that.
        later = max(T0, datetime.now(UTC)) + settings.run.claim_ttl + timedelta(minutes=1)
        # The reaper finds the expired send. SMTP keeps per-recipient records (it deduplicates),
        # so the delivery is planned again rather than left for a person.
        assert reap_expired(ledger(settings), later, settings=settings).reclaimed == 1
        assert _delivery(settings).state == "planned"
        assert handler.counts() == {p: 1 for p in PEOPLE[:3]}
        run_once(settings, later + timedelta(minutes=1))
    # cleo's copy came from the killed run only; dev, issued but never mailed, waits for a person
    assert handler.counts() == {p: 1 for p in PEOPLE if p == PEOPLE[2] or p not in unknown}
    final = _delivery(settings)
    assert final.state == "unknown" and PEOPLE[2] in final.last_error  # not sent: a person settles cleo
    assert _states(settings) == {**dict.fromkeys(PEOPLE, "sent"), **dict.fromkeys(unknown, "unknown")}


def test_a_second_worker_on_the_same_delivery_mails_nobody_twice(email_settings):
    """Two sends of one delivery (a lease reaped while the first still worked) share the
    per-recipient records: whoever claims a recipient first sends it."""
    from syndicate.providers.base import Job
    from syndicate.providers.smtp import SmtpProvider

    with SmtpServer() as server:
        settings = email_settings(server.port)
        _subscribe(settings, PEOPLE)
        run_once(settings, T0)
        d = _delivery(settings)
        job = Job(delivery_id=d.id, key=d.key, channel="news", kind="email", payload=d.payload)
        again = SmtpProvider(settings, "news", settings.channels["news"])
        result = again.send(job)
        again.close()
    assert handler_counts_once(server.handler)
    assert result.details["sent"] == 0 and result.details["already"] == len(PEOPLE)


def handler_counts_once(handler: Recorder) -> bool:
    return set(handler.counts().values()) == {1}


def test_recipients_command_reports_unresolved(email_settings, tmp_path, capsys):
    from syndicate.cli import main

    handler = Recorder(drop_after_data={PEOPLE[0]})
    with SmtpServer(handler) as server:
        settings = email_settings(server.port)
        _subscribe(settings, PEOPLE[:2])
        run_once(settings, T0)
    config = tmp_path / "cfg.toml"
    config.write_text(f'[site]\nname = "x"\nurl = "https://harborwellness.example"\n[store]\nurl = "{settings.store_url}"\n')
    assert main(["--config", str(config), "recipients", str(_delivery(settings).id)]) == 0
    out = capsys.readouterr().out
    assert PEOPLE[0] in out and "unknown" in out and "never mailed again" in out


def _soon() -> datetime:
    """A run_once time at which a delivery continued by the engine (due at the real clock's
    now, which is after T0) is due again in the same pass."""
    return max(T0, datetime.now(UTC)) + timedelta(minutes=1)


def _soft_limit():
    from celery.exceptions import SoftTimeLimitExceeded

    return SoftTimeLimitExceeded()


def test_an_unreadable_reply_after_the_content_is_unknown_and_never_resent(email_settings):
    """A reply without a code (smtplib's -1) to the message content: the server may have taken
    it, so that recipient is unknown, the batch stops, and the retry mails only the rest."""
    handler = Recorder(garbage_after_data={PEOPLE[1]})
    with SmtpServer(handler) as server:
        settings = email_settings(server.port)
        _subscribe(settings, PEOPLE[:3])
        run_once(settings, T0)
        first = _delivery(settings)
        assert first.state == "planned" and first.error_class == "unknown"
        assert "unreadable reply after the message was sent" in first.last_error
        assert _states(settings) == {PEOPLE[0]: "sent", PEOPLE[1]: "unknown", PEOPLE[2]: "deferred"}
        run_once(settings, first.due_at + timedelta(seconds=1))
        assert handler.counts() == {p: 1 for p in PEOPLE[:3]}  # ben's one copy is the one he got at first
        d = _delivery(settings)
        assert d.state == "unknown"
        assert _states(settings) == {PEOPLE[0]: "sent", PEOPLE[1]: "unknown", PEOPLE[2]: "sent"}
        # The person finds no trace of ben's message: retry mails exactly him, nobody else.
        assert resolve_recipients(ledger(settings), d.id, "retry", "cli:test", [PEOPLE[1]]).delivery.state == "planned"
        run_once(settings, _soon())
    assert handler.counts() == {PEOPLE[0]: 1, PEOPLE[1]: 2, PEOPLE[2]: 1}
    assert _delivery(settings).state == "sent"
    assert _states(settings) == dict.fromkeys(PEOPLE[:3], "sent")


def test_a_long_list_stops_at_its_time_budget_and_continues_until_everyone_has_it_once(email_settings):
    """task_time_limit 2s: each send may spend 1 s (half), and the server takes 0.25 s a message.
    The send stops between recipients, the engine continues it at once (uncounted), and the
    one pass ends with the delivery sent, everyone mailed once, over one connection."""
    people = [f"reader{i:02d}@example.org" for i in range(10)]
    handler = Recorder(delay=0.25)
    with SmtpServer(handler) as server:
        settings = email_settings(server.port, run={"task_time_limit": "2s"})
        _subscribe(settings, people)
        summary = run_once(settings, _soon())
    rounds = [o for o in summary.outcomes if o.error_class == "incomplete"]
    assert len(rounds) >= 2, summary.outcomes
    assert all(o.state == "planned" and re.search(r"time budget of 1s used: sent \d+ of \d+; continuing", o.detail)
               for o in rounds)
    assert summary.outcomes[-1].state == "sent" and len(summary.outcomes) == len(rounds) + 1
    assert handler.counts() == {p: 1 for p in people}
    assert len(handler.sessions) == 1  # the connection is kept from one round to the next
    d = _delivery(settings)
    assert d.state == "sent" and d.attempts == 1 and d.last_error is None  # rounds are not attempts
    assert set(_states(settings).values()) == {"sent"}


def test_the_soft_time_limit_before_mail_from_defers_that_recipient_and_the_send_continues(email_settings,
                                                                                         monkeypatch):
    """Celery's soft limit strikes after a recipient was claimed, before its MAIL FROM: that
    recipient goes back to deferred (not left `sending`, nor `issued` if its issue commit was
    started early), and the continued send mails them once."""
    real, calls = smtplib.SMTP.mail, []

    def mail(self, sender, options=()):
        calls.append(len(calls))
        if len(calls) == 3:
            raise _soft_limit()
        return real(self, sender, options)

    monkeypatch.setattr(smtplib.SMTP, "mail", mail)
    with SmtpServer() as server:
        settings = email_settings(server.port)
        _subscribe(settings, PEOPLE)
        summary = run_once(settings, _soon())
    first = summary.outcomes[0]
    assert first.error_class == "incomplete" and first.state == "planned"
    assert "stopped by the task's soft time limit: sent 2 of 5; continuing" in first.detail
    assert summary.outcomes[-1].state == "sent"
    assert server.handler.counts() == {p: 1 for p in PEOPLE}
    rows = {r.recipient: r for r in recipient_report(ledger(settings), _delivery(settings).id)}
    assert {r.state for r in rows.values()} == {"sent"}
    # The 3rd to 5th: claimed (in one chunk), deferred by the interruption, claimed again
    assert sorted(r.attempts for r in rows.values()) == [1, 1, 2, 2, 2]
    assert _delivery(settings).attempts == 1


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_the_soft_time_limit_after_the_content_leaves_that_recipient_unknown(email_settings, monkeypatch):
    """The soft limit arrives as Celery delivers it: a signal, here while the client waits for
    the server's reply to ben's message. Ben may have it: unknown, never mailed again; the
    others are mailed once by the continued send."""
    handler = Recorder(delay=0.5)
    real_send = smtplib.SMTP.send

    def send(self, data):
        real_send(self, data)
        if isinstance(data, bytes) and data.endswith(b"\r\n.\r\n") and f"To: {PEOPLE[1]}".encode() in data:
            signal.setitimer(signal.ITIMER_REAL, 0.1)  # strikes inside getreply()

    def strike(signum, frame):
        raise _soft_limit()

    monkeypatch.setattr(smtplib.SMTP, "send", send)
    previous = signal.signal(signal.SIGALRM, strike)
    try:
        with SmtpServer(handler) as server:
            settings = email_settings(server.port)
            _subscribe(settings, PEOPLE[:4])
            summary = run_once(settings, _soon())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    first = summary.outcomes[0]
    assert first.error_class == "incomplete" and "soft time limit: sent 1 of 4" in first.detail
    assert summary.outcomes[-1].state == "unknown"
    assert handler.counts() == {p: 1 for p in PEOPLE[:4]}  # ben's copy is the interrupted one
    assert _states(settings) == {PEOPLE[0]: "sent", PEOPLE[1]: "unknown", PEOPLE[2]: "sent", PEOPLE[3]: "sent"}
    d = _delivery(settings)
    assert d.state == "unknown" and PEOPLE[1] in d.last_error
    # Cancelled by a person: ben is left as he is, and the delivery counts as sent to the rest.
    assert resolve_recipients(ledger(settings), d.id, "cancel", "cli:test", None).delivery.state == "sent"
    assert _states(settings)[PEOPLE[1]] == "cancelled"


def test_a_send_whose_claim_was_lost_stops_mailing(email_settings):
    """The worker stalls on its 2nd recipient past its lease; the reaper takes the send back and
    a person cancels the delivery. When the stale send comes back, its next lease extension finds
    the claim gone: it records what it sent and mails nobody else; the delivery stays cancelled."""
    handler = Recorder(hold_at=2)
    with SmtpServer(handler) as server:
        settings = email_settings(server.port, run={"claim_ttl": "3s"})  # the keeper writes every 1 s
        _subscribe(settings, PEOPLE)
        done: dict = {}
        worker = threading.Thread(target=lambda: done.update(summary=run_once(settings, _soon())))
        worker.start()
        try:
            wait_for(handler.held.is_set, 30, "the second message")
            later = datetime.now(UTC) + settings.run.claim_ttl + timedelta(minutes=1)
            assert reap_expired(ledger(settings), later, settings=settings).reclaimed == 1
            assert cancel(ledger(settings), _delivery(settings).id, "test").state == "cancelled"
            time.sleep(1.2)  # past the keeper's interval: its next keep() writes
        finally:
            handler.release.set()
            worker.join(60)
    assert not worker.is_alive()
    assert handler.counts() == {PEOPLE[0]: 1, PEOPLE[1]: 1}  # nobody after the claim was lost
    # What it sent is recorded; the ones it had claimed and not reached are deferred.
    assert _states(settings) == {PEOPLE[0]: "sent", PEOPLE[1]: "sent", **dict.fromkeys(PEOPLE[2:], "deferred")}
    d = _delivery(settings)
    assert d.state == "cancelled" and d.sent_at is None
    [outcome] = done["summary"].outcomes
    assert outcome.error_class == "incomplete" and outcome.state == "cancelled"
    assert "lost the claim" in outcome.detail and "stopped mailing (2 sent)" in outcome.detail

"""SMTP: one email delivery sent as one message per recipient, exactly once per recipient.

Channel options::

    provider = "smtp"
    options = { host = "smtp.example.org", port = 587, security = "starttls",
                username_env = "SMTP_USER", password_env = "SMTP_PASSWORD",
                audience = "subscribers" }

``security``: ``starttls`` (default, port 587; refuses to go on if the server offers no
STARTTLS), ``tls`` (implicit TLS, port 465) or ``none`` (port 25; a local relay only).
Certificates are verified; ``ca_file`` names extra trusted CAs. ``timeout`` (seconds, default
30) bounds every network wait. ``envelope_from`` sets the bounce address (default: the From
address); ``return_path`` (``bounces@example.org``) gives each message its own signed one,
``bounces+TOKEN@example.org``, read back by ``syndicate bounces fetch`` (``providers/bouncebox.py``).
``audience = "subscribers"`` sends to the active subscribers (read at send time),
otherwise to the channel's ``to`` list. Suppressed addresses are skipped either way.
``dkim_selector``, ``dkim_domain`` and ``dkim_private_key_env``: every message is DKIM-signed,
each recipient's after personalization (``email/dkim.py``).

Exactly once per recipient (the rules and the records: ``email/recipients.py``). One
connection is opened (and reused) for a batch; each recipient gets its own SMTP transaction,
recorded in ``recipient_sends`` (unique per delivery and recipient): recipients are claimed
``sending`` 50 to a commit before their MAIL FROM; each becomes ``issued``, committed, before
its content goes out; its answer is written with a later one's issue, or at the end. On
PostgreSQL that commit is one statement on the book's ledger thread, started once the previous
recipient's content is out and waited for before this one's content (the transaction shape:
docs/engine.md); on SQLite it is made after DATA's 354. After a crash, a
recipient still ``sending`` was certainly not mailed and is mailed when the delivery resumes;
one ``issued`` may have the message and becomes ``unknown``: never mailed again, and the
delivery ends ``unknown`` (``Unresolved``) for a person to settle each such recipient. Hence
``deduplicates = True``: the engine may retry the delivery.

Errors (``base.py`` vocabulary):

=================================================  =============================================
what happened                                      result
=================================================  =============================================
cannot connect, TLS handshake cut, 4xx greeting    Retryable (nothing sent)
authentication refused, credentials unset          AuthExpired
4xx to MAIL/RCPT/DATA or after the content         recipient ``deferred``, the rest go on; then
                                                   Retryable (deferred ones go on the retry)
421, or the connection drops before the content    recipient ``deferred``, batch stops; Retryable
5xx to RCPT/DATA or after the content              recipient ``failed`` (not retried); the rest
                                                   go on. A 5xx to RCPT naming the address (5.1.1,
                                                   a bare 550) is also a hard bounce
                                                   (``audience/suppression.py``): suppressed for
                                                   every channel; a policy refusal (5.7.x) is not
5xx to MAIL FROM (sender refused)                  Permanent
the connection drops (or times out) after the      recipient ``unknown`` (not resent), batch
message content was sent, before the reply, or     stops; OutcomeUnknown (the retry resumes)
the reply to the content cannot be read
every recipient refused permanently                Permanent
the time budget (half ``run.task_time_limit``)     stop between recipients; Incomplete (the
is used up, recipients left                        engine continues at once, uncounted)
Celery's soft time limit strikes mid-recipient     that recipient ``deferred`` (before the
                                                   content) or ``unknown`` (after); Incomplete
the send lease was lost (reaped; the delivery      stop mailing at once; ClaimLost (an
planned again, cancelled, or taken by another      Incomplete; the engine's fenced transitions
worker)                                            leave the delivery as it is)
=================================================  =============================================

A send that settled nobody before its budget or the soft limit ran out raises Retryable
instead of Incomplete (a counted attempt, with a backoff), so it cannot loop.
"""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import ssl
import time
from email import policy
from email.utils import parseaddr

from syndicate.audience import bounces, subscribers, suppression
from syndicate.email import dkim, routing
from syndicate.email.message import MessageTemplate
from syndicate.email.recipients import (
    BatchReport,
    Outcome,
    RecipientBook,
    pending_recipients,
    stopped_early,
    unresolved_error,
)
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import utcnow
from syndicate.providers.base import (
    AuthExpired,
    ClaimLost,
    Job,
    OutcomeUnknown,
    Permanent,
    Provider,
    ProviderError,
    Retryable,
    SendResult,
    batch_budget,
    soft_time_limit,
)
from syndicate.settings import SettingsError, secret

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
# Recipients claimed per commit. A worker killed mid-chunk leaves the unsent ones `sending`,
# which a resumed send mails (their content never went out); a larger chunk saves commits.
CLAIM_CHUNK = 50
_CRLF = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")


class _Deferred(Exception):
    """4xx: not accepted; safe to try this recipient again later."""


class _Refused(Exception):
    """5xx for this recipient: recorded as failed, never retried. ``at_rcpt``: the server
    refused the address itself (RCPT TO), not this message's content."""

    def __init__(self, message: str, at_rcpt: bool = False):
        super().__init__(message)
        self.at_rcpt = at_rcpt


class _Lost(Exception):
    """The connection broke; ``after_content`` says whether the message may have arrived."""

    def __init__(self, message: str, after_content: bool):
        super().__init__(message)
        self.after_content = after_content


class SmtpProvider(Provider):
    name = "smtp"
    our_unsubscribe_link = True
    # Per-recipient records make a retried delivery safe: nobody already mailed is mailed again.
    deduplicates = True

    def __init__(self, settings, channel_name, channel):
        super().__init__(settings, channel_name, channel)
        self.options = channel.options
        self.security = str(self.options.get("security", "starttls")).lower()
        if self.security not in DEFAULT_PORTS:
            raise Permanent(f"SMTP channel {channel_name!r}: security must be starttls, tls or none, "
                            f"got {self.security!r}")
        self.host = self.options.get("host")
        if not self.host:
            raise Permanent(f"SMTP channel {channel_name!r}: options.host is not set")
        self.port = int(self.options.get("port") or DEFAULT_PORTS[self.security])
        self.timeout = float(self.options.get("timeout", 30))
        self._conn: smtplib.SMTP | None = None
        self._signer: dkim.DkimSigner | None = None
        self._next: tuple[str, str, str, bytes] | None = None  # the next recipient's message, built early

    # ------------------------------------------------------------------ the batch

    def send(self, job: Job) -> SendResult:
        started = time.monotonic()
        budget = batch_budget(self.settings)
        factory = open_ledger(self.settings.store_url)
        payload = job.payload
        sender = self.options.get("envelope_from") or parseaddr(payload.get("from") or "")[1]
        self.sign_as(payload.get("from") or "")
        self._next = None  # built for another send, perhaps with another key
        report = BatchReport()
        todo = pending_recipients(factory, job, report, job.token, self.settings)
        if not todo:
            return self._result(job, report)
        where = f"SMTP {self.host}"
        settled_before = report.settled()
        book = RecipientBook(factory, job, self.settings.run.claim_ttl, report)
        try:
            with book:
                conn = self._connection()
                for done, recipient in enumerate(todo):
                    # Between recipients only, and after at least one: each send makes progress.
                    if done and time.monotonic() - started >= budget:
                        raise stopped_early(where, f"time budget of {budget:g}s used", report, len(todo),
                                            settled_before)
                    if not book.claimed:  # the next few in one commit (raises ClaimLost if not ours)
                        book.claim(todo[done:done + CLAIM_CHUNK])
                    if recipient not in book.claimed:
                        continue  # the claim skipped them: settled meanwhile (counted on the next send)
                    following = todo[done + 1] if done + 1 < len(todo) else None
                    self._send_one(book, conn, job, sender, recipient, report, following)
                    if report.lost:
                        self._drop()
                        break
        except ClaimLost as exc:
            self._drop()  # it may be inside DATA (a 354 answered, the content withheld)
            raise ClaimLost(f"{where}: {exc}; stopped mailing ({report.summary()})") from None
        except soft_time_limit():
            # Celery's soft limit struck mid-recipient: settle the ones in hand, drop the
            # connection (it may be mid-transaction) and continue in the next task.
            book.settle("stopped by the task's soft time limit")
            self._drop()
            raise stopped_early(where, "stopped by the task's soft time limit", report, len(todo),
                                settled_before) from None
        except ProviderError:
            raise  # raised between recipients, or after RSET: the connection is clean
        except Exception:
            # Anything else (a ledger error while issuing, say) may leave the connection inside
            # DATA: it must not carry a later message. The recipient in hand was never issued,
            # or its content had gone: its record says which.
            self._drop()
            raise
        return self._result(job, report)

    def _send_one(self, book: RecipientBook, conn: smtplib.SMTP, job: Job, sender: str, recipient: str,
                  report: BatchReport, following: str | None = None) -> None:
        """Mail one claimed RECIPIENT; note (and count) the outcome in BOOK. The recipient is
        ``issued`` (committed, with the answers noted before it) before its content goes: the
        commit runs on the book's ledger thread (PostgreSQL) while the wire is busy, started once
        the content of the one before has gone (FOLLOWING is the next one), else once RCPT is
        accepted; the content waits for it."""

        def note(state: str, exc: Exception | None = None, code: int | None = None,
                 message_id: str | None = None, count: bool = True) -> None:
            book.answer({recipient: Outcome(state, message_id=message_id, code=code,
                                            error=str(exc) if exc is not None else None)}, count=count)

        prepared, self._next = self._next, None
        if prepared is None or prepared[0] != recipient:
            try:
                prepared = self._prepare(job, sender, recipient)
            except SettingsError as exc:
                note("deferred", exc, count=False)
                raise AuthExpired(str(exc)) from None
        _, message_id, envelope, data = prepared

        def meanwhile() -> None:
            # The content is out; the server takes a while to answer it (it reads and queues
            # the whole message). Meanwhile the next recipient's issue commit is started (on the
            # book's ledger thread) and its message is built here, instead of after the answer.
            book.issue_soon(following)
            if following is not None:
                try:
                    self._next = self._prepare(job, sender, following)
                except (SettingsError, ProviderError):  # built again, and its error raised, in its turn
                    self._next = None

        try:
            code = _transaction(conn, envelope, recipient, data, after_rcpt=lambda: book.issue_soon(recipient),
                                before_content=lambda: book.issue_one(recipient), after_content=meanwhile)
        except _Deferred as exc:
            return note("deferred", exc, _code(exc))
        except _Refused as exc:
            if exc.at_rcpt:
                hard_bounce(self.settings, recipient, str(exc), job.delivery_id)
            return note("failed", exc, _code(exc))
        except _Lost as exc:
            report.lost, report.lost_after_content = f"{recipient}: {exc}", exc.after_content
            return note("unknown" if exc.after_content else "deferred", exc)
        except _SenderRefused as exc:
            note("deferred", exc, exc.code, count=False)
            raise Permanent(f"SMTP {self.host}: sender {envelope!r} refused: {exc}", status=exc.code) from None
        note("sent", code=code, message_id=message_id)

    def _prepare(self, job: Job, sender: str, recipient: str) -> tuple[str, str, str, bytes]:
        """(RECIPIENT, Message-ID, MAIL FROM, signed content). The message is built once per
        payload (MessageTemplate); each recipient costs only the substitution of their address,
        unsubscribe token and Message-ID, and the signature. Raises SettingsError (no key)."""
        token = subscribers.unsubscribe_token(self.settings, recipient)
        message_id = _message_id(job, recipient, sender)
        envelope = self.envelope_sender(sender, job.delivery_id, recipient)
        template = MessageTemplate.for_payload(routing.payload_for(job.payload, recipient))
        return recipient, message_id, envelope, self.signed(template.for_recipient(recipient, token, message_id))

    def _result(self, job: Job, report: BatchReport) -> SendResult:
        summary = report.summary()
        if report.lost and report.lost_after_content:
            raise OutcomeUnknown(f"SMTP {self.host}: connection lost after sending to {report.lost}; "
                                 f"that recipient is not mailed again; {summary}; the rest go on the retry")
        if report.lost:
            raise Retryable(f"SMTP {self.host}: connection lost ({report.lost}); {summary}")
        if report.deferred:
            raise Retryable(f"SMTP {self.host}: {report.deferred} recipients deferred (4xx); {summary}")
        if report.failed and not (report.sent or report.already or report.unresolved):
            raise Permanent(f"SMTP {self.host}: every recipient was refused; {summary}")
        if report.unresolved:
            raise unresolved_error(f"SMTP {self.host}", report, job.delivery_id)
        return SendResult(ref=f"smtp {self.host}: {summary}", details=report.details())

    # ------------------------------------------------------------------ bounces and DKIM

    def envelope_sender(self, sender: str, delivery_id: int | None, recipient: str) -> str:
        """MAIL FROM for RECIPIENT: with ``return_path``, its own signed bounce address (VERP,
        ``audience/bounces.py``), so a bounce names who it is about; else SENDER."""
        base = self.options.get("return_path")
        if not base:
            return sender
        try:
            return bounces.return_path(self.settings, str(base), delivery_id, recipient)
        except SettingsError as exc:
            raise AuthExpired(str(exc)) from None

    def sign_as(self, from_address: str) -> None:
        """Sign what follows with the channel's DKIM key (nothing without ``dkim_selector``); a
        missing key variable is AuthExpired and an unusable key Permanent, before anyone is mailed."""
        try:
            self._signer = dkim.signer(self.options, from_address, f"SMTP channel {self.channel_name!r}")
        except SettingsError as exc:
            raise AuthExpired(str(exc)) from None
        except dkim.DkimKeyError as exc:
            raise Permanent(str(exc)) from None

    def signed(self, data: bytes) -> bytes:
        """DATA with its DKIM signature (see ``sign_as``), or as it is."""
        return self._signer.sign(data) if self._signer is not None else data

    def signed_message(self, message) -> bytes:
        """MESSAGE (an ``EmailMessage``) as the bytes to send, DKIM-signed (see ``sign_as``)."""
        return self.signed(message.as_bytes(policy=policy.SMTP))

    # ------------------------------------------------------------------ the connection

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None:
            try:
                if self._conn.noop()[0] == 250:
                    return self._conn
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()
        self._conn = self._open()
        return self._conn

    def connect(self) -> smtplib.SMTP:
        """A new, logged-in connection (TLS and certificate checks as configured); the caller closes it."""
        return self._open()

    def _open(self) -> smtplib.SMTP:
        context = ssl.create_default_context(cafile=self.options.get("ca_file"))
        where = f"SMTP {self.host}:{self.port}"
        try:
            if self.security == "tls":
                conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except ssl.SSLCertVerificationError as exc:
            raise Permanent(f"{where}: TLS certificate not trusted ({exc.verify_message})") from None
        except smtplib.SMTPConnectError as exc:
            raise Retryable(f"{where}: refused the connection: {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise Retryable(f"{where}: cannot connect: {type(exc).__name__}: {exc}") from None
        try:
            conn.ehlo()
            if self.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise Permanent(f"{where} offers no STARTTLS; not sending in clear text "
                                    "(set security = \"none\" for a local relay)")
                conn.starttls(context=context)
                conn.ehlo()
            self._login(conn, where)
        except ssl.SSLCertVerificationError as exc:
            _quietly_close(conn)
            raise Permanent(f"{where}: TLS certificate not trusted ({exc.verify_message})") from None
        except (Permanent, AuthExpired):
            _quietly_close(conn)
            raise
        except smtplib.SMTPResponseException as exc:
            _quietly_close(conn)
            raise Retryable(f"{where}: {exc.smtp_code} {_text(exc.smtp_error)}", status=exc.smtp_code) from None
        except (OSError, smtplib.SMTPException) as exc:
            _quietly_close(conn)
            raise Retryable(f"{where}: connection failed during set-up: {type(exc).__name__}") from None
        return conn

    def _login(self, conn: smtplib.SMTP, where: str) -> None:
        user_env, password_env = self.options.get("username_env"), self.options.get("password_env")
        if not user_env and not password_env:
            return
        try:
            user = secret(user_env, f"SMTP channel {self.channel_name!r} (username_env)")
            password = secret(password_env, f"SMTP channel {self.channel_name!r} (password_env)")
        except SettingsError as exc:
            raise AuthExpired(str(exc)) from None
        try:
            conn.login(user, password)
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthExpired(f"{where}: authentication refused: {exc.smtp_code} {_text(exc.smtp_error)}",
                              status=exc.smtp_code) from None
        except smtplib.SMTPNotSupportedError:
            raise AuthExpired(f"{where}: the server offers no AUTH (credentials configured)") from None

    def _drop(self) -> None:
        if self._conn is not None:
            _quietly_close(self._conn)
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()

    def check(self) -> str:
        conn = self._open()
        try:
            return f"SMTP {self.host}:{self.port} ({self.security}) accepted the connection" + (
                " and the credentials" if self.options.get("username_env") else "")
        finally:
            _quietly_close(conn)


# ---------------------------------------------------------------------- one SMTP transaction


class _SenderRefused(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _transaction(conn: smtplib.SMTP, sender: str, recipient: str, data: bytes,
                 before_content=None, after_rcpt=None, after_content=None) -> int:
    """MAIL, RCPT, DATA and the content for one recipient; the server's final code (250).
    BEFORE_CONTENT (if given) is called after DATA's 354, the moment before the content goes out:
    the recipient's ``issued`` is committed there (an exception from it sends nothing). AFTER_RCPT
    (if given) is called once RCPT is accepted, before DATA: it may start that commit early.
    AFTER_CONTENT (if given) is called once the content is written, before its answer is read (the
    next recipient's commit may start there)."""
    needs_utf8 = not (sender + recipient).isascii()
    options = ["SMTPUTF8"] if needs_utf8 and conn.has_extn("smtputf8") else []
    try:
        code, reply = conn.mail(sender, options)
        if code != 250:
            if code in (421, -1):  # closing, or a reply that cannot be read: nothing was sent
                raise _Lost(f"{code} {_text(reply)} (server closing or unreadable reply)", after_content=False)
            if 400 <= code < 500:
                _reset(conn)
                raise _Deferred(f"{code} {_text(reply)}")
            _reset(conn)
            raise _SenderRefused(f"{code} {_text(reply)}", code)
        code, reply = conn.rcpt(recipient)
        if code not in (250, 251):
            _refuse(conn, code, reply, at_rcpt=True)
        if after_rcpt is not None:
            after_rcpt()
        conn.putcmd("data")
        code, reply = conn.getreply()
        if code != 354:
            _refuse(conn, code, reply)
    except (smtplib.SMTPException, OSError) as exc:  # disconnected, or a reply line too long
        raise _Lost(f"connection lost before the message was sent ({type(exc).__name__})",
                    after_content=False) from None
    # From here on the server may have the message: a lost connection, or a reply we cannot
    # read, is an unknown outcome (never resent).
    body = _dot_stuffed(data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    if before_content is not None:
        before_content()
    try:
        conn.send(body + b".\r\n")
        if after_content is not None:
            after_content()
        code, reply = conn.getreply()
    except (smtplib.SMTPException, OSError) as exc:
        raise _Lost(f"connection lost after the message was sent, before the server's reply "
                    f"({type(exc).__name__})", after_content=True) from None
    if code == -1:  # smtplib's code for a reply without a number: did the server take it?
        raise _Lost(f"unreadable reply after the message was sent: {_text(reply)!r}", after_content=True)
    if code != 250:
        _refuse(conn, code, reply)
    return code


def _dot_stuffed(data: bytes) -> bytes:
    """DATA's content: CRLF line ends, a leading dot doubled. The regular expressions cost ~0.25 ms
    each on a 20 KiB message; a message already in CRLF without leading dots (what the
    MessageTemplate and policy.SMTP make) is found so by counting, in C, ten times cheaper."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = _CRLF.sub(b"\r\n", data)
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    return data


def _refuse(conn: smtplib.SMTP, code: int, reply: bytes, at_rcpt: bool = False) -> None:
    """Turn a non-success reply for this recipient into the matching exception."""
    message = f"{code} {_text(reply)}"
    if code == 421 or code == -1:
        raise _Lost(f"{message} (server closing)", after_content=False)
    _reset(conn)
    if 400 <= code < 500:
        raise _Deferred(message)
    raise _Refused(message, at_rcpt)


def _reset(conn: smtplib.SMTP) -> None:
    try:
        conn.rset()
    except (smtplib.SMTPException, OSError):
        pass


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError:
        pass


def _text(reply) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:300]


def _code(exc: Exception) -> int | None:
    match = re.match(r"(\d{3})\b", str(exc))
    return int(match.group(1)) if match else None


def hard_bounce(settings, recipient: str, reply: str, delivery_id: int | None = None) -> None:
    """A 5xx to RCPT TO. When the receiving server refused the address itself (5.1.1 no such
    user; a bare 550), it is a hard bounce in the one event log: the address is suppressed for
    every channel, not only failed here. A refusal about us instead (5.7.x policy, relaying
    denied, a blocklist) is stored as a ``block`` and suppresses nobody: a misconfigured relay
    must not empty the list. Once per delivery and address (a retry refused again is the same
    event)."""
    kind, subtype = bounces.classify(bounces.status_in(reply), _code(Exception(reply)), reply)
    if kind == "none":
        return
    with transaction(open_ledger(settings.store_url)) as s:
        suppression.record_event(s, settings, provider="smtp", kind=kind, subtype=subtype, email=recipient,
                                 diagnostic=f"RCPT TO refused: {reply}", delivery_id=delivery_id,
                                 event_id=f"rcpt:{delivery_id or 'invite'}:{recipient.lower()}")


def _message_id(job: Job, recipient: str, sender: str) -> str:
    # Stable per (delivery, recipient): a copy sent twice would be recognisable as one message.
    domain = sender.rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(recipient.encode()).hexdigest()[:16]
    return f"<{job.key}.{digest}@{domain}>"


def send_invites(settings, channel_name: str) -> tuple[int, list[str]]:
    """Double opt-in: mail each pending, not yet invited subscriber its confirm link over the
    SMTP channel CHANNEL_NAME. Returns (sent, addresses that failed)."""
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    from syndicate.render.payloads import from_header

    factory = open_ledger(settings.store_url)
    channel = settings.channels[channel_name]
    provider = SmtpProvider(settings, channel_name, channel)
    pending = subscribers.pending_to_invite(factory)
    if not pending:
        return 0, []
    from_value = from_header(channel, settings)
    sender = provider.options.get("envelope_from") or parseaddr(from_value)[1]
    provider.sign_as(from_value)
    sent, failed = 0, []
    conn = provider._connection()
    try:
        for row in pending:
            msg = EmailMessage()
            msg["Subject"] = f"Please confirm your subscription to {settings.site.name}"
            msg["From"] = from_value
            msg["To"] = row.email
            msg["Date"] = format_datetime(utcnow())
            msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
            msg.set_content(
                f"Hello{' ' + row.name if row.name else ''},\n\n"
                f"Please confirm that you want the {settings.site.name} newsletter at this address:\n\n"
                f"{subscribers.confirm_url(settings, row.email)}\n\n"
                "If you did not ask for it, ignore this email: you will get nothing more from us.\n\n"
                f"{settings.site.name}\n{settings.site.address}\n")
            try:
                _transaction(conn, provider.envelope_sender(sender, None, row.email), row.email, provider.signed(msg.as_bytes(policy=policy.SMTP)))
            except (_Deferred, _Refused, _SenderRefused) as exc:
                if isinstance(exc, _Refused) and exc.at_rcpt:
                    hard_bounce(settings, row.email, str(exc))
                failed.append(f"{row.email} ({exc})")
                continue
            except _Lost as exc:
                failed.append(f"{row.email} ({exc})")
                break
            subscribers.mark_invited(factory, row.email)
            sent += 1
    finally:
        provider.close()
    return sent, failed

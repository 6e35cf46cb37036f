"""Shared parts of the email tests: a real SMTP server (aiosmtpd) that records what it receives
and can misbehave on cue, and settings for an SMTP channel mailing the subscriber list.

(No tests here; pytest collects the file because of its name, which keeps it with the tests
it serves.)
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.cluster import free_port, wait_until  # noqa: F401 (free_port: re-exported to the SMTP tests)

SECRET = "test-signing-key-not-a-real-secret"
SITE_URL = "https://harborwellness.example"
PUBLIC_URL = "https://harborwellness.example/news"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    session: int  # which connection it came over
    confirmed: bool = True  # False: the connection was dropped before the server's reply

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class Recorder:
    """aiosmtpd handler: records every message; misbehaves per recipient on request."""

    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)  # address -> replies to give, in turn
    drop_after_data: set[str] = field(default_factory=set)  # close the connection before replying
    garbage_after_data: set[str] = field(default_factory=set)  # accept, but reply without a code
    delay: float = 0.0  # seconds every message waits for the server's reply (a slow server)
    hold_at: int | None = None  # the Nth message (1-based) waits until `release` is set
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    sessions: set[int] = field(default_factory=set)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        replies = self.rcpt_replies.get(address.lower())
        if replies:
            reply = replies.pop(0)
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.sessions.add(id(session))
        record = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or
                                                                            envelope.content), id(session))
        self.received.append(record)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.hold_at is not None and len(self.received) == self.hold_at:
            self.held.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
        if set(a.lower() for a in envelope.rcpt_tos) & self.drop_after_data:
            self.drop_after_data -= {a.lower() for a in envelope.rcpt_tos}
            record.confirmed = False
            server.transport.close()
            return "421 closing (never seen by the client)"
        if set(a.lower() for a in envelope.rcpt_tos) & self.garbage_after_data:
            self.garbage_after_data -= {a.lower() for a in envelope.rcpt_tos}
            return "Message accepted, probably"  # no reply code: smtplib reads it as -1
        return "250 Message accepted"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address.lower() in (a.lower() for a in r.rcpt_tos)]

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for r in self.received:
            for a in r.rcpt_tos:
                result[a.lower()] = result.get(a.lower(), 0) + 1
        return result


class SmtpServer:
    """A real SMTP server on a free local port, in a thread."""

    def __init__(self, handler: Recorder | None = None, *, users: dict[str, str] | None = None, tls_context=None):
        self.handler = handler or Recorder()
        self.port = free_port()
        kwargs = {}
        if users is not None:
            def authenticate(server, session, envelope, mechanism, auth_data):
                ok = (isinstance(auth_data, LoginPassword)
                      and users.get(_text(auth_data.login)) == _text(auth_data.password))
                return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

            kwargs.update(authenticator=authenticate, auth_required=True, auth_require_tls=tls_context is not None)
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.handler.release.set()
        self.controller.stop()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def smtp_channel(port: int, **options) -> dict:
    return {"kind": "email", "provider": "smtp", "from_address": "news@harborwellness.example",
            "from_name": "Harbor Wellness", "unsubscribe_mailto": "unsubscribe@harborwellness.example",
            "options": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 10,
                        "audience": "subscribers", **options}}


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    wait_until(predicate, timeout, what, interval=0.05)

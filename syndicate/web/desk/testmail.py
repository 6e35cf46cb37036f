"""A test email: one delivery's stored message, sent to one address a person typed.

It is not the delivery being sent: the delivery's state, its recipient records and its
subscribers are untouched; the test is recorded in the audit trail ("test email"). The subject
starts with "[Test]" so nobody mistakes it for the real thing; everything else is the message
exactly as a subscriber gets it (personalized for the test address).

How it travels, in this order:

1. the channel's own SMTP server, when the channel's provider is "smtp";
2. the SMTP server in the channel's ``options.test_smtp`` table (same keys as an SMTP channel's
   options: host, port, security, username_env, password_env, timeout), for channels sent
   through an email service (Mailchimp, SES, ...) or the outbox;
3. the outbox channel without ``test_smtp``: the message is written to
   ``<outbox>/<channel>/tests/`` instead (the demo has no mail server).

One person may send TESTS_PER_HOUR tests an hour (counted from the audit trail), so the desk
cannot be used to mail strangers in bulk.
"""

from __future__ import annotations

import smtplib
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path

from sqlalchemy import func, select

from syndicate.audience import subscribers
from syndicate.email.message import personalize, preview_token
from syndicate.engine.states import record
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Event, utcnow
from syndicate.providers.base import ProviderError
from syndicate.providers.smtp import SmtpProvider
from syndicate.settings import Channel, Settings

TESTS_PER_HOUR = 10  # per signed-in person: a test carries a real unsubscribe token to any address


class SendTestError(Exception):
    """The test email could not be sent; str() says why, in one line."""


def send_test_email(factory, settings: Settings, delivery_id: int, address: str, actor: str) -> str:
    """Send delivery DELIVERY_ID's message to ADDRESS; a one-line description of what happened."""
    try:
        address = subscribers.normalize(address)
    except subscribers.InvalidAddress as exc:
        raise SendTestError(f"{address!r} is not an email address: {exc}") from None
    with transaction(factory) as s:
        sent = s.scalar(select(func.count(Event.id)).where(Event.action == "test email", Event.actor == actor,
                                                            Event.at > utcnow() - timedelta(hours=1)))
        if sent >= TESTS_PER_HOUR:
            raise SendTestError(f"{TESTS_PER_HOUR} test emails in the last hour is the limit for one person; "
                                "try again later")
        row = s.get(Delivery, delivery_id)
        if row is None:
            raise SendTestError(f"delivery {delivery_id}: no such delivery")
        if row.kind != "email" or "html" not in (row.payload or {}):
            raise SendTestError(f"delivery {delivery_id} is not an email with a rendered message")
        payload, channel_name = row.payload, row.channel
    if subscribers.is_suppressed(factory, address):
        raise SendTestError(f"{address} has unsubscribed from our emails; send the test to another address")
    channel = settings.channels.get(channel_name)
    if channel is None:
        raise SendTestError(f"channel {channel_name!r} is no longer in the settings")
    message = personalize(payload, address, preview_token(settings, address))
    del message["Subject"]
    message["Subject"] = f"[Test] {payload['subject']}"
    transport = _smtp_channel(channel)
    if transport is not None:
        where = _send_smtp(settings, channel_name, transport, message, address)
    elif channel.provider == "outbox":
        where = _write_outbox(settings, channel_name, delivery_id, message)
    else:
        raise SendTestError(f"channel {channel_name!r} sends through {channel.provider}, which cannot send a "
                            "single test; set options.test_smtp = {host = ..., port = ...} on the channel")
    with transaction(factory) as s:
        record(s, delivery_id, actor, "test email", f"to {address} {where}")
    return where


def _smtp_channel(channel: Channel) -> Channel | None:
    if channel.provider == "smtp":
        return channel
    test = channel.options.get("test_smtp")
    if isinstance(test, dict) and test.get("host"):
        return Channel(kind="email", provider="smtp", options=dict(test))
    return None


def _send_smtp(settings: Settings, name: str, channel: Channel, message, address: str) -> str:
    try:
        provider = SmtpProvider(settings, name, channel)
    except ProviderError as exc:
        raise SendTestError(str(exc)) from None
    sender = channel.options.get("envelope_from") or parseaddr(message["From"])[1]
    where = f"via SMTP {provider.host}:{provider.port}"
    try:
        provider.sign_as(str(message["From"]))  # DKIM-signed like a real send
        conn = provider.connect()  # TLS, certificate checks and login exactly as a real send
    except ProviderError as exc:
        raise SendTestError(str(exc)) from None
    try:
        conn.sendmail(sender, [address], provider.signed_message(message),
                      mail_options=[] if (sender + address).isascii() else ["SMTPUTF8"])
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()))
        raise SendTestError(f"SMTP {provider.host} refused {address}: {code} {_text(reply)}") from None
    except smtplib.SMTPResponseException as exc:
        raise SendTestError(f"SMTP {provider.host}: {exc.smtp_code} {_text(exc.smtp_error)}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendTestError(f"SMTP {provider.host}: {type(exc).__name__}: {exc}") from None
    finally:
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            pass
    return where


def _write_outbox(settings: Settings, channel: str, delivery_id: int, message) -> str:
    folder = settings.outbox_dir / channel / "tests"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{delivery_id}-{utcnow():%Y%m%dT%H%M%S%f}.eml"
    path.write_bytes(bytes(message))
    return f"written to the outbox ({_short(path, settings.outbox_dir)}): this channel has no mail server"


def _short(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _text(reply) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:200]

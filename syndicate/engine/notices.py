"""Sending one notice (a signup confirmation, a welcome) to one person, now.

Through the signup channel (``audience.signup.channel``, else the first email channel): its own
SMTP server when its provider is "smtp", the SMTP server of its ``options.test_smtp``, or the
outbox (``<outbox>/<channel>/notices/``) when its provider is the outbox (the demo). A channel
sent through an email service's API without ``test_smtp`` cannot send notices: ``notice_channel``
says so, and signup answers that mail cannot be sent just now. A notice goes to one address
the person typed; it is recorded in the audit trail (``events``, action "notice").
"""

from __future__ import annotations

import logging
import re
from email.utils import parseaddr

from syndicate.audience import subscribers
from syndicate.engine.states import record
from syndicate.ledger.db import transaction
from syndicate.ledger.models import utcnow
from syndicate.providers.base import ProviderError
from syndicate.providers.smtp import SmtpProvider
from syndicate.render.email import build_message
from syndicate.render.notices import render_notice
from syndicate.render.payloads import from_header
from syndicate.settings import Channel, Settings

log = logging.getLogger(__name__)


class NoticeError(Exception):
    """The notice could not be sent; str() says why (no address or secret in it)."""


def notice_channel(settings: Settings) -> str:
    name = settings.audience.signup.channel
    if name:
        return name
    emails = [n for n, ch in settings.enabled_channels().items() if ch.kind == "email"]
    if not emails:
        raise NoticeError("no email channel to send signup confirmations through")
    listed = [n for n in emails if settings.channels[n].options.get("audience") == "subscribers"]
    return (listed or emails)[0]


def send_notice(factory, settings: Settings, kind: str, address: str) -> str:
    """Render and send notice KIND to ADDRESS; where it went (one line)."""
    name = notice_channel(settings)
    channel = settings.channels[name]
    unsubscribe = f"{settings.public_url}/unsubscribe/{subscribers.unsubscribe_token(settings, address)}"
    links = {"confirm_url": subscribers.confirm_url(settings, address),
             "preferences_url": f"{settings.public_url}/preferences/{subscribers.unsubscribe_token(settings, address)}"}
    content = render_notice(settings, name, kind, unsubscribe_url=unsubscribe, **links)
    message = build_message(content, from_addr=from_header(channel, settings), to_addr=address,
                            reply_to=channel.reply_to, unsubscribe_https=unsubscribe if kind == "welcome" else None,
                            unsubscribe_mailto=None, message_id_domain=_domain(channel, settings))
    transport = _smtp(channel)
    if transport is not None:
        where = _send_smtp(settings, name, transport, message, address)
    elif channel.provider == "outbox":
        folder = settings.outbox_dir / name / "notices"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{kind}-{utcnow():%Y%m%dT%H%M%S%f}-{re.sub(r'[^A-Za-z0-9@._+-]', '_', address)}.eml"
        path.write_bytes(bytes(message))
        where = "written to the outbox"
    else:
        raise NoticeError(f"channel {name!r} sends through {channel.provider}, which cannot send one email; "
                          "set options.test_smtp on it or audience.signup.channel")
    with transaction(factory) as s:
        record(s, None, "signup", "notice", f"{kind} {where}")
    return where


def _domain(channel: Channel, settings: Settings) -> str:
    return parseaddr(from_header(channel, settings))[1].rpartition("@")[2] or "localhost"


def _smtp(channel: Channel) -> Channel | None:
    if channel.provider == "smtp":
        return channel
    test = channel.options.get("test_smtp")
    if isinstance(test, dict) and test.get("host"):
        return Channel(kind="email", provider="smtp", options=dict(test))
    return None


def _send_smtp(settings: Settings, name: str, channel: Channel, message, address: str) -> str:
    try:
        provider = SmtpProvider(settings, name, channel)
        provider.sign_as(str(message["From"]))
        conn = provider.connect()
    except ProviderError as exc:
        raise NoticeError(str(exc)) from None
    sender = channel.options.get("envelope_from") or parseaddr(message["From"])[1]
    try:
        conn.sendmail(sender, [address], provider.signed_message(message),
                      mail_options=[] if (sender + address).isascii() else ["SMTPUTF8"])
    except Exception as exc:
        raise NoticeError(f"SMTP {provider.host}: {type(exc).__name__}") from None
    finally:
        try:
            conn.quit()
        except Exception:
            pass
    return f"via SMTP {provider.host}:{provider.port}"

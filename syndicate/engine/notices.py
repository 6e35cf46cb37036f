"""Sending one notice (a signup confirmation, a welcome) to one person, now.

Through the signup channel (``audience.signup.channel``, else the first email channel): its own
SMTP server when its provider is "smtp", the SMTP server of its ``options.test_smtp``, the
outbox (``<outbox>/<channel>/notices/``) when its provider is the outbox (the demo), or, for a
direct-send API (Postmark, Mailgun, SendGrid Mail Send, SES), one API call for this one
recipient through the channel's own adapter (``send_batch``, the call a list send makes). A
campaign provider (Mailchimp, Buttondown, SendGrid Single Sends) mails only its own audience
and cannot send one email: settings refuse signup through such a channel without
``test_smtp`` (``settings.Settings._signup_channel``). A notice goes to one address the person
typed; it is recorded in the audit trail (``events``, action "notice").
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
    name = settings.signup_channel()
    if not name:
        raise NoticeError("no email channel to send signup confirmations through")
    return name


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
    api = _direct_send(settings, name, channel) if transport is None else None
    if transport is not None:
        where = _send_smtp(settings, name, transport, message, address)
    elif api is not None:
        where = _send_api(api, kind, content, message, address)
    elif channel.provider == "outbox":
        folder = settings.outbox_dir / name / "notices"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{kind}-{utcnow():%Y%m%dT%H%M%S%f}-{re.sub(r'[^A-Za-z0-9@._+-]', '_', address)}.eml"
        path.write_bytes(bytes(message))
        where = "written to the outbox"
    else:
        raise NoticeError(f"channel {name!r} sends through {channel.provider}, which cannot send one email; "
                          "set options.test_smtp on it or audience.signup.channel")  # settings refuse this
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


def _direct_send(settings: Settings, name: str, channel: Channel):
    """CHANNEL's direct-send adapter (an email service's API that mails one address), else None."""
    from syndicate import providers
    from syndicate.providers.batching import DirectSendProvider

    try:
        cls = providers.get(channel.provider)
    except providers.UnknownProvider:
        return None
    return cls(settings, name, channel) if issubclass(cls, DirectSendProvider) else None


def _send_api(provider, kind: str, content, message, address: str) -> str:
    """CONTENT as one recipient's API call, the body made by the adapter as for a list send (its
    own escaping); no token to merge: the links in it are this person's already."""
    from syndicate.providers.base import Job
    from syndicate.providers.batching import Recipient

    payload = {"subject": content.subject, "preheader": content.preheader, "html": content.html,
               "text": content.text, "sensitive": False, "from": str(message["From"]),
               "reply_to": provider.channel.reply_to, "unsubscribe_https": None, "unsubscribe_mailto": None}
    headers = {h: str(message[h]) for h in ("List-Unsubscribe", "List-Unsubscribe-Post") if message[h]}
    job = Job(delivery_id=0, key=f"notice-{kind}-{utcnow():%Y%m%dT%H%M%S%f}", channel=provider.channel_name,
              kind="email", payload=payload)
    try:
        answer = provider.send_batch(job, provider.content(job), [Recipient(address, "", headers)])
    except ProviderError as exc:
        raise NoticeError(str(exc)) from None
    outcome = answer.outcomes.get(address)
    if outcome is None or outcome.state != "sent":
        raise NoticeError(f"{provider.service} did not accept it: {outcome.error if outcome else 'no answer'}")
    return f"via the {provider.service} API"


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

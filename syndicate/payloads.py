"""What a delivery carries: the payload rendered once at planning time.

A payload is stored on the delivery row, so what staff previewed is exactly what is sent. For
a social channel it is the network's request body; for email it is the rendered message parts
plus the envelope, from which each recipient's MIME message is built at send time.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from html import escape
from urllib.parse import quote, urlsplit

from syndicate.model import PostData
from syndicate.render import build_message, render_post_email, render_social
from syndicate.render.email import render_digest_email, unsubscribe_url_template
from syndicate.settings import Channel, Settings


def build_payload(post: PostData, settings: Settings, channel_name: str) -> dict:
    """Render POST for one channel. Raises render.NotApplicable where the network can't take it."""
    channel = settings.channels[channel_name]
    if channel.kind == "email":
        return email_payload(post, settings, channel_name, channel)
    return render_social(channel.kind, post, settings, channel_name)


def email_payload(post: PostData, settings: Settings, channel_name: str, channel: Channel) -> dict:
    return _email_fields(render_post_email(post, settings, channel_name), settings, channel)


def digest_payload(posts: list[PostData], settings: Settings, channel_name: str, edition: dict) -> dict:
    """One digest edition (EDITION: key, since, until, at, post ids) for a digest channel."""
    content = render_digest_email(posts, settings, channel_name,
                                  edition_at=datetime.fromisoformat(edition["at"]))
    return {**_email_fields(content, settings, settings.channels[channel_name]), "edition": edition}


def _email_fields(content, settings: Settings, channel: Channel) -> dict:
    return {
        "subject": content.subject,
        "preheader": content.preheader,
        "html": content.html,
        "text": content.text,
        "sensitive": content.sensitive,
        "from": from_header(channel, settings),
        "reply_to": channel.reply_to,
        # "subscribers": the list the tool keeps, read at send time; else the `to` addresses.
        "audience": "subscribers" if channel.options.get("audience") == "subscribers" else "to",
        "to": list(channel.to),
        # "{token}" in both is each recipient's signed unsubscribe token (see personalize).
        "unsubscribe_https": unsubscribe_url_template(settings, channel),
        "unsubscribe_mailto": channel.unsubscribe_mailto,
    }


def from_header(channel: Channel, settings: Settings) -> str:
    address = channel.from_address or f"newsletter@{urlsplit(settings.site.url).hostname}"
    name = channel.from_name or settings.site.name
    return f'"{name}" <{address}>'


def personalize(payload: dict, recipient: str, token: str, *, message_id: str | None = None) -> EmailMessage:
    """RECIPIENT's own message: "{token}" in the unsubscribe links (headers, HTML and text)
    replaced by TOKEN, their signed unsubscribe token."""
    from syndicate.render import EmailContent

    template = payload.get("unsubscribe_https")
    web, mailto = unsubscribe_links(payload, token)
    html, text = payload["html"], payload["text"]
    if template and "{token}" in template:
        html = html.replace(escape(template), escape(web)).replace(template, web)
        text = text.replace(template, web)
    content = EmailContent(subject=payload["subject"], preheader=payload["preheader"], html=html, text=text,
                           sensitive=payload.get("sensitive", False))
    domain = parseaddr(payload["from"])[1].rpartition("@")[2] or "localhost"
    return build_message(content, from_addr=payload["from"], to_addr=recipient, reply_to=payload.get("reply_to"),
                         unsubscribe_https=web, unsubscribe_mailto=mailto, message_id_domain=domain,
                         message_id=message_id)


def unsubscribe_links(payload: dict, token: str) -> tuple[str | None, str | None]:
    """(web, mailto): one recipient's unsubscribe links, TOKEN (their signed unsubscribe token)
    in place of "{token}". The mailto is the channel's, else one to the From address; without
    "{token}" in it, the token goes into its subject. Either may be None (none configured).
    ``render.email.unsubscribe_headers(web, mailto)`` makes the RFC 8058 headers of them; this is
    what ``personalize`` puts in each message, and what direct-send APIs get per recipient."""
    web = payload.get("unsubscribe_https")
    mailto = payload.get("unsubscribe_mailto") or _default_mailto(payload)
    if web and "{token}" in web:
        web = web.replace("{token}", token)
    if mailto:
        mailto = mailto.replace("{token}", token) if "{token}" in mailto else _with_subject(mailto, token)
    return web, mailto


def _default_mailto(payload: dict) -> str | None:
    # Unsubscribe by mail goes to the From address unless the channel names a mailbox.
    address = parseaddr(payload.get("from") or "")[1]
    return f"mailto:{address}" if "@" in address else None


def _with_subject(mailto: str, token: str) -> str:
    # The token in the subject lets whoever reads that mailbox act on the request.
    base = mailto if mailto.lower().startswith("mailto:") else f"mailto:{mailto}"
    if "?" in base:
        return base
    return f"{base}?subject={quote('unsubscribe ' + token)}"


def email_messages(payload: dict, settings: Settings) -> list[EmailMessage]:
    """Each fixed recipient's message (``to``), personalized like a real send: the outbox and
    previews show exactly the headers and links a subscriber would get."""
    return [personalize(payload, to, preview_token(settings, to)) for to in payload["to"] or ["subscriber@localhost"]]


def preview_token(settings: Settings, address: str) -> str:
    """The real signed unsubscribe token where the signing key is configured; else a visible
    stand-in (the demo needs no secrets, and its messages are never mailed)."""
    from syndicate.settings import SettingsError
    from syndicate.subscribers import unsubscribe_token

    try:
        return unsubscribe_token(settings, address)
    except SettingsError:
        return "preview-unsigned"

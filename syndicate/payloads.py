"""What a delivery carries: the payload rendered once at planning time.

A payload is stored on the delivery row, so what staff previewed is exactly what is sent. For
a social channel it is the network's request body; for email it is the rendered message parts
plus the envelope, from which each recipient's MIME message is built at send time.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import parseaddr
from urllib.parse import urlsplit

from syndicate.model import PostData
from syndicate.render import build_message, render_post_email, render_social
from syndicate.settings import Channel, Settings


def build_payload(post: PostData, settings: Settings, channel_name: str) -> dict:
    """Render POST for one channel. Raises render.NotApplicable where the network can't take it."""
    channel = settings.channels[channel_name]
    if channel.kind == "email":
        return email_payload(post, settings, channel_name, channel)
    return render_social(channel.kind, post, settings, channel_name)


def email_payload(post: PostData, settings: Settings, channel_name: str, channel: Channel) -> dict:
    content = render_post_email(post, settings, channel_name)
    site = settings.site
    return {
        "subject": content.subject,
        "preheader": content.preheader,
        "html": content.html,
        "text": content.text,
        "sensitive": content.sensitive,
        "from": _from_header(channel, settings),
        "reply_to": channel.reply_to,
        "to": list(channel.to),
        "unsubscribe_https": channel.unsubscribe_url or f"{site.url}/unsubscribe",
        "unsubscribe_mailto": channel.unsubscribe_mailto,
    }


def _from_header(channel: Channel, settings: Settings) -> str:
    address = channel.from_address or f"newsletter@{urlsplit(settings.site.url).hostname}"
    name = channel.from_name or settings.site.name
    return f'"{name}" <{address}>'


def email_messages(payload: dict) -> list[EmailMessage]:
    """One MIME message per recipient of an email payload."""
    from syndicate.render import EmailContent

    content = EmailContent(subject=payload["subject"], preheader=payload["preheader"],
                           html=payload["html"], text=payload["text"],
                           sensitive=payload.get("sensitive", False))
    domain = parseaddr(payload["from"])[1].rpartition("@")[2] or "localhost"
    return [
        build_message(content, from_addr=payload["from"], to_addr=to, reply_to=payload.get("reply_to"),
                      unsubscribe_https=payload.get("unsubscribe_https"),
                      unsubscribe_mailto=payload.get("unsubscribe_mailto"),
                      message_id_domain=domain)
        for to in payload["to"] or ["subscriber@localhost"]
    ]

"""What a delivery carries: the payload rendered once at planning time.

A payload is stored on the delivery row, so what staff previewed is exactly what is sent. For
a social channel it is the network's request body; for email it is the rendered message parts
plus the envelope, from which each recipient's MIME message is built at send time
(``email/message.py``).
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from syndicate.model import PostData
from syndicate.render.email import (
    preferences_url_template,
    render_digest_email,
    render_post_email,
    unsubscribe_url_template,
)
from syndicate.render.social import render_social
from syndicate.settings import Channel, Settings

# The payload key listing what a person changed at the desk ("text", "subject", "preheader"):
# a re-render (the feed's copy changed before the send) keeps those. A "_" key is a hint,
# never sent to a network (providers/http.py ``body_of``).
EDITED = "_edited"


def build_payload(post: PostData, settings: Settings, channel_name: str, overrides: dict | None = None) -> dict:
    """Render POST for one channel. Raises render.NotApplicable where the network can't take it.

    OVERRIDES (email only): a person's subject and preheader, kept instead of the templates'."""
    channel = settings.channels[channel_name]
    if channel.kind == "email":
        return email_payload(post, settings, channel_name, channel, overrides)
    return render_social(channel.kind, post, settings, channel_name)


def email_payload(post: PostData, settings: Settings, channel_name: str, channel: Channel,
                  overrides: dict | None = None) -> dict:
    return _email_fields(render_post_email(post, settings, channel_name, overrides), settings, channel)


def digest_payload(posts: list[PostData], settings: Settings, channel_name: str, edition: dict,
                   overrides: dict | None = None) -> dict:
    """One digest edition (EDITION: key, since, until, at, post ids) for a digest channel."""
    content = render_digest_email(posts, settings, channel_name,
                                  edition_at=datetime.fromisoformat(edition["at"]), overrides=overrides,
                                  view_url=archive_url(settings, channel_name, edition["key"]),
                                  edition=str(edition.get("key") or "digest"))
    return {**_email_fields(content, settings, settings.channels[channel_name]), "edition": edition}


def archive_url(settings: Settings, channel_name: str, key: str) -> str:
    """Where the public archive shows an edition ("view in browser")."""
    return f"{settings.public_url}/archive/{channel_name}-{key}"


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
        # The footer's "Manage your preferences" link: the same token, another page.
        "preferences_https": preferences_url_template(settings),
    }


def from_header(channel: Channel, settings: Settings) -> str:
    address = channel.from_address or f"newsletter@{urlsplit(settings.site.url).hostname}"
    name = channel.from_name or settings.site.name
    return f'"{name}" <{address}>'

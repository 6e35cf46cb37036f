"""What the campaign providers share (Mailchimp, Buttondown, SendGrid Single Sends).

A campaign provider keeps the audience itself: Syndicate hands it one newsletter (subject,
preheader, HTML, text) and the provider mails its own list, with its own unsubscribe link and
its own RFC 8058 headers. So before the content leaves, the footer's unsubscribe link (the
channel's unsubscribe URL, ``{token}`` and all) is replaced by the provider's merge tag:
Mailchimp ``*|UNSUB|*``, SendGrid ``{{{unsubscribe}}}``, Buttondown ``{{ unsubscribe_url }}``.
The footer's "Manage your preferences" link (our preferences page, the same token) becomes the
provider's own preferences link where it documents one (Mailchimp ``*|UPDATE_PROFILE|*``,
SendGrid ``{{{unsubscribe_preferences}}}``); Buttondown documents none, so the link is left out.
The swap happens at send time, on the stored payload, so the shared templates stay the same
for every provider (the preview desk shows Syndicate's own link in that place).

Sending later: channel option ``schedule_after`` (minutes, default 0 = send at once) makes the
campaign *scheduled* at the provider instead of sent, which leaves staff a window to cancel
it in the provider's own interface. The delivery's own ``due_at`` already decides when the
campaign is handed over, so most channels leave this at 0.

Exactly once: each campaign is created carrying the delivery's key (Mailchimp: the internal
campaign title; Buttondown: ``metadata``, plus ``X-Idempotency-Key``; SendGrid: the Single
Send's name). An ambiguous answer is OutcomeUnknown, and before any later attempt the engine
asks the adapter's ``lookup`` (``looks_up = True``) for a campaign with that key: one already
sent or scheduled is the delivery's result, a draft is resumed by the retry instead of a second
campaign being made; a ``dedup_window`` of a week (the lookup reads only the newest campaigns).
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from html import escape
from typing import Any

log = logging.getLogger(__name__)

# The lookup reads only the newest campaigns (Mailchimp: 100 of the audience; Buttondown: the
# first page; SendGrid: a name search), so an outcome-unknown delivery is retried only within
# this window of its first attempt; later a person decides (engine rule 4).
LOOKUP_WINDOW = timedelta(days=7)


def with_merge_tag(payload: dict[str, Any], tag: str, *, html_tag: str | None = None,
                   preferences_tag: str | None = None) -> tuple[str, str, bool]:
    """(html, text, found): the payload's bodies with our unsubscribe URL replaced by TAG, and
    our preferences link by PREFERENCES_TAG (None: the link is taken out).

    ``html_tag`` is what goes into the HTML when it must differ from the text's tag. ``found``
    is False when the bodies carry no unsubscribe URL (a custom template without a footer):
    the provider then adds its own footer, or refuses to send, as its rules say.
    """
    html, text = _with_preferences(payload, preferences_tag)
    web = payload.get("unsubscribe_https")
    if not web:
        return html, text, False
    found = web in html or escape(web) in html or web in text
    html_tag = tag if html_tag is None else html_tag
    html = html.replace(escape(web), html_tag).replace(web, html_tag)
    text = text.replace(web, tag)
    if not found:
        log.warning("campaign content carries no unsubscribe link (%s); the provider's footer must supply it", web)
    return html, text, found


def _with_preferences(payload: dict[str, Any], tag: str | None) -> tuple[str, str]:
    """The bodies with our preferences URL replaced by TAG; without a TAG, the link (HTML: the
    ``<a>``, with its paragraph when it is alone in one; text: its line) is removed."""
    html, text = payload.get("html") or "", payload.get("text") or ""
    url = payload.get("preferences_https")
    if not url:
        return html, text
    if tag is not None:
        return html.replace(escape(url), tag).replace(url, tag), text.replace(url, tag)
    for written in {escape(url), url}:
        link = r"<a\b[^>]*?href=\"" + re.escape(written) + r"\"[^>]*>.*?</a>"
        html = re.sub(rf"<p\b[^>]*>\s*{link}\s*</p>|{link}", "", html, flags=re.S)
    text = "".join(line for line in text.splitlines(keepends=True) if url not in line)
    return html, text


def sender(payload: dict[str, Any]) -> tuple[str, str]:
    """(display name, address) of the payload's From header."""
    name, address = parseaddr(payload.get("from") or "")
    return name, address


def reply_address(payload: dict[str, Any]) -> str:
    """The reply-to address: the channel's reply_to, else the From address."""
    reply = parseaddr(payload.get("reply_to") or "")[1]
    return reply or sender(payload)[1]


def send_time(options: dict[str, Any], now: datetime | None = None, *, quantum_minutes: int = 0) -> datetime | None:
    """When to schedule the campaign (UTC), or None to send at once.

    ``schedule_after`` minutes from now, rounded *up* to a multiple of ``quantum_minutes``
    (Mailchimp accepts only :00, :15, :30 and :45).
    """
    minutes = float(options.get("schedule_after") or 0)
    if minutes <= 0:
        return None
    at = (now or datetime.now(UTC)).astimezone(UTC) + timedelta(minutes=minutes)
    at = at.replace(microsecond=0)
    if quantum_minutes:
        step = quantum_minutes * 60
        epoch = at.timestamp()
        at = datetime.fromtimestamp(math.ceil(epoch / step) * step, UTC)
    return at


def iso(at: datetime) -> str:
    """ISO 8601 in UTC with a Z, to the second."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

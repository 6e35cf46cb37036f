"""One post as a newsletter email: MJML + Jinja2 templates compiled to HTML, plus plain text.

Privacy by default (health care): no tracking pixels, no click redirects, no third-party
fonts or icons, UTM tags only when the channel asks for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import urlsplit

import mjml
from markupsafe import Markup

from syndicate.model import PostData
from syndicate.render import colors, sanitize
from syndicate.render.errors import RenderError
from syndicate.render.links import absolute, channel_utm, is_http, post_slug, with_utm
from syndicate.render.safety import is_sensitive
from syndicate.render.templating import first_existing, render
from syndicate.render.textlength import truncate_to
from syndicate.settings import Channel, Settings

# Gmail clips a message body past ~102 KB and hides what follows, footer and unsubscribe
# link included. Stay clearly below.
MAX_HTML_BYTES = 100_000
PREHEADER_LENGTH = 150  # about what inboxes show next to the subject
# The longest subject we send, cut at a word with "…". Inboxes show some 40 to 90 characters of
# a subject, so nothing a reader sees is lost at 150, while a runaway title (a broken feed's
# 5,000 characters) never becomes a header that spam filters and mail servers frown on.
SUBJECT_MAX = 150
# Inboxes show about the first INBOX_SUBJECT characters of a subject on a phone; the inbox
# list's one line (subject, then the preheader) is cut about INBOX_LINE.
INBOX_SUBJECT = 60
INBOX_LINE = 100
DEFAULT_TEMPLATE = "email/post.mjml"
DEFAULT_TEXT_TEMPLATE = "email/post.txt.j2"
SUBJECT_TEMPLATE = "email/subject.txt.j2"
# Dark mode (layout.mjml's prefers-color-scheme styles): the page and the footer behind text.
DARK_BACKGROUNDS = ("#1e2326", "#15191b")
_COLOR = re.compile(r"#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,20}")


@dataclass(frozen=True)
class EmailContent:
    subject: str
    preheader: str
    html: str
    text: str
    sensitive: bool


def render_post_email(post: PostData, settings: Settings, channel: str,
                      overrides: dict | None = None) -> EmailContent:
    """Render ``post`` for the email channel named ``channel`` (HTML under 100 KB).

    OVERRIDES: a person's ``subject`` and ``preheader`` from the desk, used instead of the
    templates' (``_with_overrides``)."""
    ch = _email_channel(settings, channel)
    sensitive = is_sensitive(post, settings.safety)
    utm = channel_utm(ch.utm, ch.utm_per_post, post_slug(post.url), channel)
    link = with_utm(post.url, utm)
    content = _content_html(post, settings, utm)
    context = _context(post, settings, ch, link=link, sensitive=sensitive)
    context["subject"] = subject_line(render(settings, SUBJECT_TEMPLATE, context), post.title,
                                      # Untitled: what social posts lead with; never a sensitive post's words.
                                      "" if sensitive else post.summary,
                                      f"A new article from {settings.site.name}")
    _with_overrides(context, overrides)
    html_template, text_template = _template_names(settings, ch)
    html, body, truncated = _fit_html(settings, html_template, context, content)
    text = render(settings, text_template, {**context, "content": Markup(body), "truncated": truncated,
                                             "text": sanitize.to_text(body)})
    return EmailContent(subject=context["subject"], preheader=context["preheader"], html=html,
                        text=_tidy_text(text), sensitive=sensitive)


def _with_overrides(context: dict, overrides: dict | None) -> None:
    for name in ("subject", "preheader"):
        if overrides and overrides.get(name) is not None:
            context[name] = _one_line(str(overrides[name]))


def _email_channel(settings: Settings, channel: str) -> Channel:
    ch = settings.channels.get(channel)
    if ch is None:
        raise RenderError(f"no channel named {channel!r} in the settings")
    if ch.kind != "email":
        raise RenderError(f"channel {channel!r} is a {ch.kind} channel, not email")
    return ch


def _content_html(post: PostData, settings: Settings, utm: dict[str, str]) -> str:
    site_host = _host(settings.site.url)

    def tag_own_links(url: str) -> str:
        # Links back to the practice's own site carry the channel's UTM tags; others don't.
        return with_utm(url, utm) if _host(url) == site_host else url

    html = sanitize.sanitize(post.content_html, post.url, fallback_alt=post.title, rewrite_link=tag_own_links)
    if not html and post.summary:
        html = f"<p>{Markup.escape(post.summary)}</p>"
    return html


def _context(post: PostData, settings: Settings, ch: Channel, *, link: str, sensitive: bool) -> dict:
    image = absolute(post.image_url, post.url)
    text = sanitize.to_text(post.content_html) if not post.summary else ""
    return {
        **_frame_context(settings, ch, sensitive),
        "post": {
            "title": post.title, "url": link, "author": post.author,
            "date": _long_date(post.published, settings),
            # The featured image is shown above the post unless the content has it already.
            "image_url": image if is_http(image) and not _content_has_image(post, image) else None,
            # No alt from the feed: none here either. The title is the heading right under the
            # picture, and a screen reader would read it twice (the template then drops the link).
            "image_alt": post.image_alt or "",
        },
        "preheader": truncate_to(_one_line(post.summary or text), PREHEADER_LENGTH, len),
        "author_bio": _author_bio(post.author, settings),
    }


def _author_bio(name: str, settings: Settings) -> dict | None:
    """The configured bio of the post's author (matched by name, ignoring case), else None."""
    wanted = name.strip().casefold()
    for known, author in settings.site.authors.items():
        if known.strip().casefold() == wanted and wanted:
            photo = author.photo_url if is_http(author.photo_url) else None
            return {"name": known, "bio": author.bio, "photo_url": photo, "url": author.url}
    return None


def unsubscribe_url_template(settings: Settings, ch: Channel) -> str:
    """The channel's unsubscribe URL; ``{token}`` stands for each recipient's signed token."""
    return ch.unsubscribe_url or f"{settings.public_url}/unsubscribe/{{token}}"


def preferences_url_template(settings: Settings) -> str:
    """The reader's preferences page; ``{token}`` is the same signed token as the unsubscribe link's."""
    return f"{settings.public_url}/preferences/{{token}}"


def _frame_context(settings: Settings, ch: Channel, sensitive: bool) -> dict:
    """What the shared frame (layout, header, contact, crisis, footer) needs."""
    site, brand, safety = settings.site, settings.site.brand, settings.safety
    primary, accent = _color(brand.primary_color, "#2f6f6a"), _color(brand.accent_color, "#f4efe6")
    return {
        "site": {"name": site.name, "url": site.url, "language": site.language,
                 "address_lines": [line.strip() for line in site.address.splitlines() if line.strip()]},
        "brand": {
            "logo_url": absolute(brand.logo_url, site.url + "/") if brand.logo_url else None,
            "primary_color": primary,
            "accent_color": accent,
            "text_color": _color(brand.text_color, "#1f2a30"),
            # Text in brand colours reads at 4.5:1 at least (WCAG 1.4.3): links are the brand
            # colour, darkened only if it is too light on white and on the accent; the header's
            # and buttons' text is white, or dark on a light brand colour. lint-email warns.
            "link_color": colors.readable(primary, "#ffffff", accent),
            "on_primary": colors.text_on(primary),
            "dark_link_color": colors.readable(primary, *DARK_BACKGROUNDS, ratio=7),
        },
        "contact": {"text": site.contact_text, "url": absolute(site.contact_url, site.url + "/")
                    if site.contact_url else None},
        "sensitive": sensitive,
        "safety": {"enabled": safety.enabled, "crisis_line": safety.crisis_line, "inbox_note": safety.inbox_note},
        "unsubscribe_url": unsubscribe_url_template(settings, ch),
        "preferences_url": preferences_url_template(settings),
    }


def _content_has_image(post: PostData, image: str | None) -> bool:
    return bool(image) and image in (absolute(m, post.url) for m in re.findall(
        r"<img\b[^>]*?\bsrc=[\"']([^\"']+)", post.content_html or "", flags=re.I))


def _template_names(settings: Settings, ch: Channel) -> tuple[str, str]:
    """The channel's MJML template and its plain-text twin (``x.mjml`` -> ``x.txt.j2``)."""
    html_name = first_existing(settings, [ch.template or DEFAULT_TEMPLATE])
    text_name = first_existing(settings, [re.sub(r"\.mjml$", "", html_name) + ".txt.j2", DEFAULT_TEXT_TEMPLATE])
    return html_name, text_name


def _fit_html(settings: Settings, template: str, context: dict, content: str) -> tuple[str, str, bool]:
    """(compiled HTML, content used, was cut): long content is cut to whole paragraphs so
    the compiled email stays under MAX_HTML_BYTES."""
    html = _compile_with(settings, template, context, content, truncated=False)
    if len(html.encode()) < MAX_HTML_BYTES:
        return html, content, False
    frame = len(_compile_with(settings, template, context, "", truncated=True).encode())
    budget = MAX_HTML_BYTES - frame - 1024  # the content itself is copied through by MJML
    while True:
        body, _ = sanitize.excerpt(content, max(budget, 0))
        html = _compile_with(settings, template, context, body, truncated=True)
        overshoot = len(html.encode()) - MAX_HTML_BYTES
        if overshoot < 0 or budget <= 0:
            return html, body, True
        budget -= overshoot + 1024


def _compile_with(settings: Settings, template: str, context: dict, content: str, truncated: bool) -> str:
    source = render(settings, template, {**context, "content": Markup(content), "truncated": truncated})
    try:
        # fonts={} : MRML would otherwise add Google Fonts <link>s for some font names.
        return mjml.mjml2html(source, disable_comments=True, fonts={})
    except ValueError as exc:
        raise RenderError(f"{template}: MJML could not compile the email: {exc}") from None


def _color(value: str, default: str) -> str:
    # Colours land inside style attributes; anything but a hex code or a colour name is
    # refused rather than trusted.
    return value if _COLOR.fullmatch(value or "") else default


def _long_date(when: datetime | None, settings: Settings) -> str:
    if when is None:
        return ""
    local = when.astimezone(settings.site.tz) if when.tzinfo else when
    return f"{local:%B} {local.day}, {local.year}"


def subject_line(*candidates: str) -> str:
    """The first of CANDIDATES that is not blank, on one line, at most SUBJECT_MAX characters:
    every email subject (posts and digests) passes here."""
    text = next((line for line in map(_one_line, candidates) if line), "")
    return truncate_to(text, SUBJECT_MAX, len)


def _one_line(text: str) -> str:
    return " ".join((text or "").split())


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _host(url: str) -> str:
    return urlsplit(url).netloc.lower().removeprefix("www.")


# -- the digest ----------------------------------------------------------------------------

DIGEST_TEMPLATE = "email/digest.mjml"
DIGEST_TEXT_TEMPLATE = "email/digest.txt.j2"
DIGEST_SUBJECT_TEMPLATE = "email/digest_subject.txt.j2"
DIGEST_EXCERPT_LENGTH = 280  # characters of each card's excerpt, cut at a word
MAX_DIGEST_HEADLINES = 60  # more than this and the list says "and N more on our website"


def render_digest_email(posts: list[PostData], settings: Settings, channel: str, *,
                        edition_at: datetime | None = None, overrides: dict | None = None,
                        view_url: str | None = None, edition: str = "digest") -> EmailContent:
    """One digest edition of POSTS (oldest first as given) for the email channel CHANNEL:
    a headline list, then a card per post; HTML under 100 KB (cards beyond what fits are
    left to the headline list)."""
    if not posts:
        raise RenderError("a digest needs at least one post")
    ch = _email_channel(settings, channel)
    # Per-post UTM values: every link of an edition carries the edition's key as its campaign.
    utm = channel_utm(ch.utm, ch.utm_per_post, edition, channel)
    items = [_digest_item(post, settings, utm) for post in posts]
    sensitive = any(item["sensitive"] for item in items)
    titles = " · ".join(item["title"] for item in items)
    context = {
        **_frame_context(settings, ch, sensitive),
        "posts": items,
        "edition": {"date": _long_date(edition_at, settings) if edition_at else "",
                    "every": ch.digest.every if ch.digest else ""},
        "preheader": truncate_to(_one_line(f"In this issue: {titles}"), PREHEADER_LENGTH, len),
        "view_url": view_url,  # the edition in the public archive (web/signup.py): no token in it
    }
    context["subject"] = subject_line(render(settings, DIGEST_SUBJECT_TEMPLATE, context), settings.site.name)
    _with_overrides(context, overrides)
    html_name = first_existing(settings, [ch.template or DIGEST_TEMPLATE])
    text_name = first_existing(settings, [re.sub(r"\.mjml$", "", html_name) + ".txt.j2", DIGEST_TEXT_TEMPLATE])
    html, shown = _fit_digest(settings, html_name, context)
    text = render(settings, text_name, {**_digest_lists(context, shown)})
    return EmailContent(subject=context["subject"], preheader=context["preheader"], html=html,
                        text=_tidy_text(text), sensitive=sensitive)


def _digest_item(post: PostData, settings: Settings, utm: dict[str, str]) -> dict:
    link = with_utm(post.url, utm)
    image = absolute(post.image_url, post.url)
    if not is_http(image) or _content_has_image(post, image):
        # No featured image of its own: the first picture the sanitizer kept (it drops
        # tracking pixels and emoji images), if any.
        found = re.search(r'<img\b[^>]*?\bsrc="([^"]+)"', sanitize.sanitize(post.content_html, post.url))
        image = found.group(1) if found else None
    # The excerpt is plain text of the sanitized post, without link targets ("text (url)").
    text = post.summary or sanitize.to_text(re.sub(r"</?a\b[^>]*>", "", sanitize.sanitize(post.content_html,
                                                                                          post.url)))
    return {
        "title": post.title or "(untitled)", "url": link, "author": post.author,
        "date": _long_date(post.published, settings),
        "image_url": image if is_http(image) else None,
        "image_alt": post.image_alt or "",  # as in the post email: not the title again
        "excerpt": truncate_to(_one_line(text), DIGEST_EXCERPT_LENGTH, len),
        "sensitive": is_sensitive(post, settings.safety),
    }


def _digest_lists(context: dict, cards: int) -> dict:
    posts = context["posts"]
    headlines = posts[:MAX_DIGEST_HEADLINES]
    return {**context, "cards": posts[:cards], "headlines": headlines,
            "more": len(posts) - len(headlines), "uncarded": posts[cards:len(headlines)]}


def _fit_digest(settings: Settings, template: str, context: dict) -> tuple[str, int]:
    """(compiled HTML, number of cards shown): as many cards as fit under MAX_HTML_BYTES."""
    cards = len(context["posts"])
    while True:
        html = _compile_digest(settings, template, _digest_lists(context, cards))
        size = len(html.encode())
        if size < MAX_HTML_BYTES or cards == 0:
            return html, cards
        # Each card costs about the same: drop as many as the overshoot needs, at least one.
        per_card = max(size // max(cards + 1, 1), 1)
        cards = max(0, min(cards - 1, cards - (size - MAX_HTML_BYTES) // per_card - 1))


def _compile_digest(settings: Settings, template: str, context: dict) -> str:
    source = render(settings, template, context)
    try:
        return mjml.mjml2html(source, disable_comments=True, fonts={})
    except ValueError as exc:
        raise RenderError(f"{template}: MJML could not compile the email: {exc}") from None


# -- the MIME message ---------------------------------------------------------------------

def build_message(content: EmailContent, *, from_addr: str, to_addr: str, reply_to: str | None = None,
                  unsubscribe_https: str | None, unsubscribe_mailto: str | None, message_id_domain: str,
                  message_id: str | None = None, date: datetime | None = None) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) with RFC 8058 one-click unsubscribe.

    ``message_id`` may be given (derived from the delivery id) so a resend is recognisable.
    """
    msg = EmailMessage(policy=MESSAGE_POLICY)
    msg["Subject"] = content.subject
    msg["From"] = from_addr
    msg["To"] = to_addr
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain=message_id_domain)
    for name, value in unsubscribe_headers(unsubscribe_https, unsubscribe_mailto).items():
        msg[name] = value
    msg.set_content(content.text, subtype="plain", charset="utf-8")
    msg.add_alternative(content.html, subtype="html", charset="utf-8")
    return msg


class _ListUnsubscribeHeader(UnstructuredHeader):
    """RFC 2369 ``List-Unsubscribe``: angle-bracketed URLs, folded only between them and never
    RFC 2047-encoded (the email package would encode a long URL as encoded-words to wrap it,
    which mailbox providers do not decode there: no one-click unsubscribe)."""

    def fold(self, *, policy):
        value = str(self)
        if not value.isascii() or any(c in value for c in "\r\n"):
            return super().fold(policy=policy)
        return fold_list_header(self.name, value, policy.linesep, policy.max_line_length or 78)


def fold_list_header(name: str, value: str, linesep: str = "\r\n", width: int = 78) -> str:
    """``name: value`` folded after the commas between ``<...>`` targets, as RFC 2369 allows;
    a single long URL stays whole on its line (up to SMTP's 998)."""
    targets = value.split(", ")
    lines, line = [], f"{name}: {targets[0]}"
    for target in targets[1:]:
        if len(line) + 2 + len(target) <= width:
            line += ", " + target
        else:
            lines.append(line + ",")
            line = " " + target
    return linesep.join([*lines, line]) + linesep


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", _ListUnsubscribeHeader)
# The messages' policy: the email package's default, List-Unsubscribe folded as RFC 2369 wants.
MESSAGE_POLICY = email_policy.default.clone(header_factory=_HEADERS)


def unsubscribe_headers(web: str | None, mailto: str | None) -> dict[str, str]:
    """The unsubscribe headers for one recipient's links (``email.message.unsubscribe_links``):
    RFC 2369 ``List-Unsubscribe``, plus RFC 8058 one-click ``List-Unsubscribe-Post`` when the
    web URL is https; empty without links. Every message and every direct-send API call gets
    its headers from here.

    A plain-http URL (a demo site) still goes into List-Unsubscribe, but one-click is only
    offered over https, as RFC 8058 requires.
    """
    scheme = web.split(":", 1)[0].lower() if web else None
    if scheme not in {None, "http", "https"}:
        raise ValueError(f"the unsubscribe URL must be http(s), got {web!r}")
    headers: dict[str, str] = {}
    targets = [f"<{web}>"] if web else []
    if mailto:
        targets.append(f"<{mailto if mailto.lower().startswith('mailto:') else 'mailto:' + mailto}>")
    if targets:
        headers["List-Unsubscribe"] = ", ".join(targets)
    if scheme == "https":
        # One click: the mailbox provider POSTs this body to the https URL.
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers

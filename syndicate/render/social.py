"""One post as the exact request body each social network's API receives.

Texts come from ``templates/social/<kind>.txt.j2`` (a channel may name another template) and
are fitted to the network's own length rule: first the lead sentence is shortened, then
hashtags are dropped, then the crisis line, and last the title is shortened. The link is
never cut. Sensitive posts (see syndicate.render.safety) get the title and a neutral line: no
excerpt of the content, and the crisis line where there is room.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

import regex

from syndicate.model import PostData
from syndicate.render.errors import NotApplicable, RenderError
from syndicate.render.links import absolute, channel_utm, is_http, post_slug, with_utm
from syndicate.render.safety import matched_topics, mentions_topic
from syndicate.render.sanitize import to_text
from syndicate.render.templating import render
from syndicate.render.textlength import (
    Rule,
    char_length,
    find_hashtags,
    find_links,
    grapheme_length,
    rule_for,
    truncate_to,
)
from syndicate.settings import LINKEDIN_AUTHOR, SOCIAL_KINDS, Channel, Settings

PINTEREST_TITLE_MAX = 100
PINTEREST_TEXT_MAX = 500  # description and alt text
BLUESKY_TAG_MAX = 64  # graphemes in one hashtag facet
BLUESKY_CARD_TEXT_MAX = 300
# Posts API: the author is the member or organization the token may post as.
PINTEREST_LINK_MAX = 2048  # PinCreate.link maxLength (Pinterest v5 OpenAPI)
LINKEDIN_DESCRIPTION_MAX = 300  # what the article card shows; the rest would be cut anyway
# LinkedIn "little text" format: these characters have a meaning and must be escaped.
_LITTLE_TEXT_RESERVED = re.compile(r"([\\|{}@\[\]()<>#*_~])")
# WordPress files every post without a category under this one: never a useful hashtag.
_DEFAULT_CATEGORIES = frozenset({"uncategorized", "uncategorised"})
# Where the Bluesky link goes while the text is composed; replaced by the shown link.
_LINK_SLOT = "\ue000"


@dataclass(frozen=True)
class _Parts:
    """What a social template is given (all plain text)."""

    title: str
    lead: str
    link: str
    hashtags: tuple[str, ...]  # each with its leading '#'
    help_line: str
    site_name: str
    author: str
    sensitive: bool

    def context(self) -> dict:
        return {"title": self.title, "lead": self.lead, "link": self.link, "hashtags": list(self.hashtags),
                "help_line": self.help_line, "site_name": self.site_name, "author": self.author,
                "sensitive": self.sensitive}


@dataclass(frozen=True)
class _Job:
    post: PostData
    settings: Settings
    channel: Channel
    kind: str
    template: str
    parts: _Parts
    now: datetime


def render_social(kind: str, post: PostData, settings: Settings, channel: str, *,
                  now: datetime | None = None) -> dict:
    """The request body (or form parameters) for posting ``post`` to ``channel``.

    ``now`` is the creation time a network wants in the body (Bluesky); default: now.
    Raises NotApplicable when the post cannot go to this network (a Pin without image).
    """
    job = _job(kind, post, settings, channel, now or datetime.now(UTC))
    return _BUILDERS[kind](job)


def _job(kind: str, post: PostData, settings: Settings, channel: str, now: datetime) -> _Job:
    if kind not in SOCIAL_KINDS:
        raise RenderError(f"{kind!r} is not a social network ({', '.join(SOCIAL_KINDS)})")
    ch = settings.channels.get(channel)
    if ch is None:
        raise RenderError(f"no channel named {channel!r} in the settings")
    if ch.kind != kind:
        raise RenderError(f"channel {channel!r} is a {ch.kind} channel, not {kind}")
    topics = matched_topics(post, settings.safety)
    parts = _Parts(
        title=_one_line(post.title),
        # Safe messaging: no excerpt of a sensitive post, whose wording may sensationalize.
        lead=f"A new article from {settings.site.name}." if topics else _lead(post),
        link=with_utm(post.url, channel_utm(ch.utm, ch.utm_per_post, post_slug(post.url), channel)),
        hashtags=tuple(f"#{tag}" for tag in hashtags(post.categories, ch, settings)),
        help_line=_one_line(settings.safety.crisis_line) if topics else "",
        site_name=settings.site.name,
        author=post.author,
        sensitive=bool(topics),
    )
    template = ch.template or f"social/{kind}.txt.j2"
    return _Job(post, settings, ch, kind, template, parts, now)


# -- per network ----------------------------------------------------------------------------

def _x(job: _Job) -> dict:
    # POST https://api.x.com/2/tweets (schema CreatePostsRequest)
    return {"text": _fitted_text(job, rule_for("x"))} | _image_hint(job)


def _facebook(job: _Job) -> dict:
    # POST /{page-id}/feed: the link becomes the preview card, so the message leaves it out.
    return {"message": _fitted_text(job, rule_for("facebook")), "link": job.parts.link} | _image_hint(job)


def _linkedin(job: _Job) -> dict:
    # POST https://api.linkedin.com/rest/posts, an article share (plus the thumbnail hint).
    tags = tuple(_LittleText(f"{{hashtag|\\#|{tag[1:]}}}") for tag in job.parts.hashtags)
    commentary = _fitted_text(replace(job, parts=replace(job.parts, hashtags=tags)), rule_for("linkedin"),
                              escape=_little_text)
    author = str(job.channel.options.get("author_urn") or "").strip()
    if not LINKEDIN_AUTHOR.fullmatch(author):
        # No default: LinkedIn refuses a made-up author only at send time, after approval.
        raise RenderError("a linkedin channel needs options.author_urn, urn:li:organization:<id> or "
                          "urn:li:person:<id> (the page or member the token posts as)")
    return {
        "author": author,
        "commentary": commentary,
        "visibility": "PUBLIC",
        "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [],
                         "thirdPartyDistributionChannels": []},
        "content": {"article": {"source": job.parts.link, "title": job.parts.title,
                                "description": truncate_to(job.parts.lead, LINKEDIN_DESCRIPTION_MAX,
                                                           char_length)}},
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    } | _thumbnail_hint(job)


def _pinterest(job: _Job) -> dict:
    # POST https://api.pinterest.com/v5/pins (schema PinCreate)
    image = absolute(job.post.image_url, job.post.url)
    if not is_http(image):
        raise NotApplicable("a Pin needs an image, and this post has none")
    board = str(job.channel.options.get("board_id") or "").strip()
    if not board.isdigit():
        raise RenderError("a pinterest channel needs options.board_id, the numeric id of the board")
    return {
        "board_id": board,
        "link": _pin_link(job),
        "title": truncate_to(job.parts.title, PINTEREST_TITLE_MAX, char_length),
        "description": _fitted_text(job, rule_for("pinterest")),
        "alt_text": truncate_to(_one_line(job.post.image_alt or job.post.title), PINTEREST_TEXT_MAX, char_length),
        "media_source": {"source_type": "image_url", "url": image},
    }


def _pin_link(job: _Job) -> str | None:
    """The post's link within PinCreate's 2048 characters: without UTM tags if need be, else
    none (a Pin without a link is still a Pin; a refused one is nothing)."""
    for link in (job.parts.link, job.post.url):
        if link and len(link) <= PINTEREST_LINK_MAX:
            return link
    return None


def _mastodon(job: _Job) -> dict:
    # POST /api/v1/statuses
    rule = rule_for("mastodon", job.channel.options)
    warning = _content_warning(job)
    # The content warning counts toward the instance's limit.
    status = _fitted_text(job, Rule(rule.measure, rule.limit - rule.measure(warning)))
    body = {"status": status, "visibility": "public", "language": _primary_language(job.settings)}
    if warning:
        body["spoiler_text"] = warning
    return body | _image_hint(job)


def _bluesky(job: _Job) -> dict:
    # com.atproto.repo.createRecord with collection app.bsky.feed.post: this is the record.
    shown = display_link(job.parts.link)
    rule = rule_for("bluesky")
    # Composed with a placeholder for the link, so its position is known exactly.
    slotted = _fitted_text(replace(job, parts=replace(job.parts, link=_LINK_SLOT)),
                           Rule(lambda text: rule.measure(text.replace(_LINK_SLOT, shown)), rule.limit))
    text = slotted.replace(_LINK_SLOT, shown)
    return {
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": job.now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        **({"langs": [lang]} if (lang := bcp47(job.settings.site.language)) else {}),
        "facets": _bluesky_facets(slotted, shown, job.parts.link),
        # A client builds the link card itself (the server does not fetch the page).
        "embed": {"$type": "app.bsky.embed.external", "external": {
            "uri": job.parts.link,
            "title": truncate_to(job.parts.title, BLUESKY_CARD_TEXT_MAX, grapheme_length),
            "description": truncate_to(job.parts.lead, BLUESKY_CARD_TEXT_MAX, grapheme_length),
        }},
    } | _thumbnail_hint(job) | _image_hint(job)


def _threads(job: _Job) -> dict:
    # POST /{threads-user-id}/threads (then threads_publish): a text post.
    rule = rule_for("threads")
    try:
        return {"media_type": "TEXT", "text": _fitted_text(job, rule)} | _image_hint(job)
    except RenderError:
        # Threads counts a link in full, so a very long one cannot be in the text; the preview
        # card (link_attachment) carries it instead.
        text = _fitted_text(replace(job, parts=replace(job.parts, link="")), rule)
        return {"media_type": "TEXT", "text": text, "link_attachment": job.parts.link}


_BUILDERS: dict[str, Callable[[_Job], dict]] = {
    "x": _x, "facebook": _facebook, "linkedin": _linkedin, "pinterest": _pinterest,
    "mastodon": _mastodon, "bluesky": _bluesky, "threads": _threads,
}


# -- composing and fitting ------------------------------------------------------------------

def _fitted_text(job: _Job, rule: Rule, *, escape: Callable[[object], object] | None = None) -> str:
    """The template's text, shortened field by field until ``rule`` is met."""
    def compose(parts: _Parts) -> str:
        context = parts.context()
        if escape:
            context = {key: escape(value) for key, value in context.items()}
        return _tidy(render(job.settings, job.template, context))

    parts = job.parts
    text = compose(parts)
    for field in ("lead", "hashtags", "help_line", "title"):
        while rule.measure(text) > rule.limit and getattr(parts, field):
            overflow = rule.measure(text) - rule.limit
            parts = replace(parts, **{field: _shorter(getattr(parts, field), overflow, rule, field)})
            text = compose(parts)
    if rule.measure(text) > rule.limit:
        raise RenderError(f"{job.template} is too long for {job.kind} ({rule.limit}) even with an empty title")
    return text


def _shorter(value: str | tuple, overflow: int, rule: Rule, field: str) -> str | tuple:
    if isinstance(value, tuple):
        return value[:-1]  # the last hashtag goes first: categories come most important first
    if field == "help_line":
        return ""  # a crisis line is shown whole or not at all
    shorter = truncate_to(value, rule.measure(value) - overflow, rule.measure)
    return shorter if rule.measure(shorter) < rule.measure(value) else ""


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


class _LittleText(str):
    """Text already in LinkedIn's little-text format (not to be escaped again)."""


def _little_text(value: object) -> object:
    if isinstance(value, _LittleText) or not isinstance(value, str | list):
        return value
    if isinstance(value, list):
        return [_little_text(item) for item in value]
    return _LITTLE_TEXT_RESERVED.sub(r"\\\1", value)


# -- the pieces -----------------------------------------------------------------------------

def hashtags(categories: list[str], channel: Channel, settings: Settings) -> list[str]:
    """Hashtags (without '#') for the categories: mapped by the channel, else CamelCase.

    A mapping to "" drops a category. Hashtags made up automatically from a sensitive
    category ("#Suicide") or from WordPress's "Uncategorized" are left out; a practice that
    wants one maps it explicitly.
    """
    mapping = {key.strip().casefold(): value for key, value in channel.hashtags.items()}
    tags: list[str] = []
    for category in categories:
        mapped = mapping.get(category.strip().casefold())
        if mapped is None and (category.strip().casefold() in _DEFAULT_CATEGORIES
                               or mentions_topic(category, settings.safety)):
            continue
        tag = camel_case(category if mapped is None else mapped)
        if _usable_tag(tag) and tag.casefold() not in {t.casefold() for t in tags}:
            tags.append(tag)
    return tags[: channel.max_hashtags]


def camel_case(text: str) -> str:
    """"mental health" -> "MentalHealth", "self-care" -> "SelfCare" (letters kept as given)."""
    words = regex.findall(r"[\p{L}\p{M}\p{N}]+", text)
    return "".join(word[:1].upper() + word[1:] for word in words)


def _usable_tag(tag: str) -> bool:
    # Networks ignore all-digit hashtags; Bluesky caps a tag at 64 graphemes.
    return bool(tag) and not tag.isdigit() and grapheme_length(tag) <= BLUESKY_TAG_MAX


def display_link(url: str, max_graphemes: int = 32) -> str:
    """How Bluesky clients show a link: no scheme, no query, shortened with "…"."""
    parts = urlsplit(url)
    shown = (parts.netloc.removeprefix("www.") + parts.path).rstrip("/")
    if parts.query or parts.fragment or grapheme_length(shown) > max_graphemes:
        graphemes = regex.findall(r"\X", shown)[: max_graphemes - 1]
        shown = "".join(graphemes) + "…"
    return shown


def bluesky_facets(text: str, link: str) -> list[dict]:
    """Facets for finished Bluesky TEXT (e.g. edited on the desk) whose post link LINK is shown
    in its shortened form: the shortened link gets LINK's facet, other links and hashtags theirs."""
    shown = display_link(link) if link else ""
    slotted = text.replace(shown, _LINK_SLOT, 1) if shown and shown in text else text
    return _bluesky_facets(slotted, shown, link)


def _bluesky_facets(slotted: str, shown: str, link: str) -> list[dict]:
    """Link facets (UTF-8 byte offsets) for the post link (at the placeholder in ``slotted``)
    and any other link, and tag facets for hashtags: Bluesky renders nothing as a link or
    tag without them."""
    spans: list[tuple[int, int, dict]] = []
    start = slotted.find(_LINK_SLOT)
    text = slotted.replace(_LINK_SLOT, shown)
    if start >= 0:
        spans.append((start, start + len(shown), {"$type": "app.bsky.richtext.facet#link", "uri": link}))
    for s, e in find_links(text):
        if not any(s < end and begin < e for begin, end, _ in spans):
            spans.append((s, e, {"$type": "app.bsky.richtext.facet#link", "uri": text[s:e]}))
    for s, e in find_hashtags(text):
        if not any(s < end and begin < e for begin, end, _ in spans) and text[s] == "#":
            spans.append((s, e, {"$type": "app.bsky.richtext.facet#tag", "tag": text[s + 1:e]}))
    return [_facet(text, s, e, feature) for s, e, feature in sorted(spans, key=lambda span: span[0])]


def _facet(text: str, start: int, end: int, feature: dict) -> dict:
    byte_start = len(text[:start].encode())
    return {"index": {"byteStart": byte_start, "byteEnd": byte_start + len(text[start:end].encode())},
            "features": [feature]}


def _thumbnail_hint(job: _Job) -> dict:
    """The link card's image, for adapters that must upload it first (LinkedIn, Bluesky).

    Keys starting with "_" are hints to the adapter and never sent (providers/http.py).
    """
    image = absolute(job.post.image_url, job.post.url)
    return {"_thumbnail_url": image} if is_http(image) else {}


def _image_hint(job: _Job) -> dict:
    """The post's image and alt text, for a channel posting images (option ``media = "image"``):
    the adapter uploads it with the post, or falls back to the card (providers/http.py)."""
    if job.channel.options.get("media") != "image" or job.parts.sensitive:
        # Safe messaging: a sensitive post goes out as its neutral text and card, no picture.
        return {}
    image = absolute(job.post.image_url, job.post.url)
    if not is_http(image):
        return {}
    # The image's own alt text only: the title is in the post already, read twice it is noise.
    return {"_image_url": image, "_image_alt": _one_line(job.post.image_alt)}


def _content_warning(job: _Job) -> str:
    # Mastodon's custom: a content warning hides a sensitive post behind a click.
    if not job.parts.sensitive:
        return ""
    topics = matched_topics(job.post, job.settings.safety)
    return "Mental health: " + ", ".join(topics[:3])


def _lead(post: PostData) -> str:
    """The summary, else the post's first paragraph (fitting shortens it as needed)."""
    summary = post.summary or to_text(post.content_html).split("\n\n")[0]
    # WordPress ends excerpts with "[…]" or "[...]": noise in a post that links to the whole.
    return re.sub(r"\s*\[(?:…|\.\.\.|&hellip;)\]\s*$", "…", _one_line(summary))


def bcp47(tag: str) -> str | None:
    """SITE.language as a BCP-47 tag (``app.bsky.feed.post`` langs have ``format: language``):
    "en_US" -> "en-US"; None for what no BCP-47 parser would take (langs is optional)."""
    tag = (tag or "").strip().replace("_", "-")
    return tag if re.fullmatch(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*", tag) else None


def _primary_language(settings: Settings) -> str:
    # Mastodon wants an ISO 639-1 code: "en-US" -> "en".
    return settings.site.language.split("-")[0].split("_")[0].lower()


def _one_line(text: str) -> str:
    # Also drops the link placeholder character, should a feed ever contain it.
    return " ".join((text or "").replace(_LINK_SLOT, "").split())

"""One home for turning a feed item, whatever its format, into a ``PostData``.

The XML and JSON readers only collect what the document says into a ``RawItem``; every rule
about identity, fingerprints, absolute URLs, the image, the summary and duplicates lives here,
so RSS, Atom and JSON Feed posts behave exactly alike.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from syndicate.feeds import markup
from syndicate.model import PostData

_WP_SIZE = re.compile(r"-\d+x\d+(?=\.\w+$)|-scaled(?=\.\w+$)")
# The line Yoast and other WordPress plugins append to every feed excerpt.
_WP_FOOTER = re.compile(r"\s*The post .{1,400}? appeared first on .{1,200}?\.?\s*$")
_IMAGE_EXT = re.compile(r"\.(?:jpe?g|png|gif|webp|avif|svg)$", re.I)
# Query parameters that only say where a click came from; they must not make a post "new".
_TRACKING = re.compile(r"^(?:utm_\w+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|_hsenc|_hsmi|igshid|wt_mc|wt_zmc)$", re.I)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass
class RawItem:
    """What one feed item says, before any normalization. URLs may still be relative."""

    guid: str = ""
    link: str = ""
    title: str = ""  # plain text
    content_html: str = ""
    content_base: str = ""  # xml:base in effect for the content ("" when none)
    summary: str = ""  # plain text, or HTML when summary_is_html
    summary_is_html: bool = True
    author: str = ""
    categories: list[str] = field(default_factory=list)
    # Images the feed names explicitly (media:content, media:thumbnail, enclosure, JSON image),
    # best first. Each is (url, alt); the first image of the content comes after them.
    images: list[tuple[str, str]] = field(default_factory=list)
    published: datetime | None = None
    updated: datetime | None = None


@dataclass
class FeedContext:
    """What items of one feed share: the bases that resolve their relative URLs."""

    feed_url: str | None  # the document's own http(s) URL, None for a local file
    home: str | None  # the site's absolute home page, None when unknown
    author: str = ""  # feed-level author, inherited by items that name none

    @property
    def link_base(self) -> str | None:
        return self.home or self.feed_url


def build_posts(items: list[RawItem], context: FeedContext) -> tuple[list[PostData], list[str]]:
    """Normalize items in feed order; drop empty ones and repeats of an identity (first wins).

    Items that share a guid but link to different pages are different posts (a CMS that reuses
    or miscopies guids): each of them is identified by the guid and its link together, so none
    is dropped, and the identities stay the same whatever order the feed lists them in.
    """
    posts, warnings, seen = [], [], set()
    empty = duplicates = homeless = relative = 0
    built = []
    for item in map(_clean_item, items):
        if not (item.link.strip() or item.title.strip() or item.content_html.strip() or item.summary.strip()):
            empty += 1
            continue
        built.append((item, _post(item, context)))
    split = _split_shared_guids([post for _, post in built])
    for item, post in built:
        if post.identity in seen:
            duplicates += 1
            continue
        seen.add(post.identity)
        homeless += not _usable_link(item.link)
        relative += not markup.is_absolute_http(post.url)
        posts.append(post)
    if empty:
        warnings.append(f"{_n(empty, 'item')} with no link, title or content dropped")
    if split:
        warnings.append(f"{_n(split, 'item')} sharing an id with an item of another link kept as separate posts "
                        "(identified by id and link)")
    if duplicates:
        warnings.append(f"{_n(duplicates, 'item')} repeating an earlier item's id dropped (the first is kept)")
    if homeless:
        warnings.append(f"{_n(homeless, 'item')} without a link of their own point to the feed's home page")
    if relative:
        warnings.append(f"{_n(relative, 'post')} with a relative link and no absolute base to resolve it "
                        "(the feed gives no site URL; fetch it by URL rather than from a file)")
    return posts, warnings


# Lone UTF-16 surrogates (a JSON "\ud800" escape) cannot be stored or encoded; control
# characters (a Word paste's vertical tab, a stray \x01 in a title) break XML, the email renderer
# and reach X as they are: markup.strip_controls says which go and which become a space.
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """VALUE without lone surrogates (replaced by U+FFFD) and control characters."""
    return markup.strip_controls(_SURROGATE.sub("\ufffd", value)) if value else value


def _clean_item(item: RawItem) -> RawItem:
    """Every text field of ITEM made safe to store and render (one place for every format)."""
    return replace(item, guid=clean_text(item.guid), link=clean_text(item.link), title=clean_text(item.title),
                   content_html=clean_text(item.content_html), content_base=clean_text(item.content_base),
                   summary=clean_text(item.summary), author=clean_text(item.author),
                   categories=[clean_text(c) for c in item.categories],
                   images=[(clean_text(u), clean_text(a)) for u, a in item.images])


def _post(item: RawItem, context: FeedContext) -> PostData:
    url = _post_url(item, context)
    content = markup.scan(item.content_html, _content_base(item, url, context))
    title = markup.collapse(item.title)
    content_hash = _content_hash(title, content.text)
    return PostData(
        identity=_identity(item, url, content_hash),
        fingerprint=fingerprint(url, title),
        url=url,
        title=title,
        summary=_summary(item, content.text),
        content_html=content.html,
        author=markup.collapse(item.author) or context.author,
        categories=_categories(item.categories),
        **_image(item, url or context.link_base, content.images),
        published=item.published or item.updated,  # Atom's <updated> is its only required date
        updated=item.updated,
        content_hash=content_hash,
    )


def _post_url(item: RawItem, context: FeedContext) -> str:
    link = _usable_link(item.link)
    if not link:  # a post with only a title/text: the site is the best place to send readers
        return context.home or context.feed_url or ""
    if markup.is_absolute_http(link):
        return link
    return markup.resolve(context.link_base, link)


def _content_base(item: RawItem, url: str, context: FeedContext) -> str | None:
    """What the content's relative URLs are relative to: the post itself, or the xml:base the
    feed declared around the content (which may itself be relative, e.g. Jekyll's)."""
    post_base = url if markup.is_absolute_http(url) else context.link_base
    return markup.resolve(post_base, item.content_base) if item.content_base else post_base


def _usable_link(link: str) -> str:
    """The item's link, unless it is something a reader cannot follow (tag:, urn:, javascript:)."""
    link = link.strip()
    scheme = _SCHEME.match(link)
    return "" if scheme and scheme.group(1).lower() not in ("http", "https") else link


def _split_shared_guids(posts: list[PostData]) -> int:
    """Give posts whose guid is shared by a post of another page the identity guid + link.

    Returns how many posts this makes (a repeat of one of them is still dropped as a repeat).
    Links are compared normalized (fingerprint), so the same item listed twice, or once over
    http and once over https, is still one post.
    """
    pages: dict[str, set[str]] = {}
    for post in posts:
        if post.identity.startswith("guid:"):
            pages.setdefault(post.identity, set()).add(split_fingerprint(post.fingerprint)[0])
    split = set()
    for post in posts:
        if len(pages.get(post.identity, ())) > 1:
            post.identity = _guid_and_link(post.identity, post.url)
            split.add(post.identity)
    return len(split)


_IDENTITY_MAX = 700  # the ledger's posts.identity column


def _guid_and_link(identity: str, url: str) -> str:
    combined = f"{identity} link:{url}"
    if len(combined) <= _IDENTITY_MAX:
        return combined
    return "guid+link:" + hashlib.sha256(combined.encode()).hexdigest()


def _identity(item: RawItem, url: str, content_hash: str) -> str:
    if item.guid.strip():
        return "guid:" + item.guid.strip()
    if _usable_link(item.link):
        return "link:" + url
    return "hash:" + content_hash


def _content_hash(title: str, text: str) -> str:
    # Text, not markup: a theme or plugin update that rewrites the HTML is not an edit.
    return hashlib.sha256(f"{_fold(title)}\n{text}".encode()).hexdigest()


def _summary(item: RawItem, content_text: str) -> str:
    text = markup.to_text(item.summary) if item.summary_is_html else markup.collapse(item.summary)
    return markup.shorten(_WP_FOOTER.sub("", text or content_text))


def _categories(raw: list[str]) -> list[str]:
    out, seen = [], set()
    for name in raw:
        name = markup.collapse(name or "")
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            out.append(name)
    return out


def _image(item: RawItem, base: str | None, in_content: list[markup.Image]) -> dict:
    """The feed's own choice of picture first, else the content's first; with alt text."""
    for url, alt in item.images:
        url = markup.resolve(base, url)
        if markup.is_absolute_http(url):
            return {"image_url": url, "image_alt": markup.collapse(alt or "") or _alt_in_content(url, in_content)}
    if in_content:
        return {"image_url": in_content[0].url, "image_alt": in_content[0].alt}
    return {"image_url": None, "image_alt": ""}


def _alt_in_content(url: str, in_content: list[markup.Image]) -> str:
    """media:content carries no alt text; the same picture inside the post often does
    (WordPress shows a "-1024x683" size of the featured "-1200x800" file)."""
    key = _image_key(url)
    return next((img.alt for img in in_content if img.alt and _image_key(img.url) == key), "")


def _image_key(url: str) -> str:
    path = urlsplit(url).path
    return _WP_SIZE.sub("", path.rsplit("/", 1)[-1]).lower()


def looks_like_image(url: str, mime: str | None = None, medium: str | None = None) -> bool:
    """Whether a media:content / enclosure entry is a picture (and not audio, video or a page)."""
    if medium:
        return medium.lower() == "image"
    if mime:
        return mime.lower().startswith("image/")
    try:
        return bool(_IMAGE_EXT.search(urlsplit(url.strip()).path))
    except ValueError:
        return False


# --- Fingerprints -----------------------------------------------------------------------------


def fingerprint(url: str, title: str) -> str:
    """``"<normalized url> <normalized title>"``: equal for the same post after an http->https,
    "www." or tracking-parameter change. Split it with ``split_fingerprint`` to match a
    permalink change on the title alone."""
    return f"{normalize_url(url)} {_fold(title)}"


def split_fingerprint(value: str) -> tuple[str, str]:
    url, _, title = value.partition(" ")
    return url, title


def normalize_url(url: str) -> str:
    """Scheme dropped, host lowercased without "www.", default port, trailing slash and
    tracking parameters removed, remaining query sorted. Fragments stay: some blogs (Scripting
    News) tell posts apart by their #anchor alone."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return quote(url, safe=":/?#[]@!$&'()*+,;=%~")
    host = (parts.hostname or "").lower().removeprefix("www.")
    if port and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{port}"
    path = quote(parts.path, safe="/%:@!$&'()*+,;=~").rstrip("/")
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                             if not _TRACKING.match(k)))
    return urlunsplit(("", host, path, query, parts.fragment)).removeprefix("//")


def _fold(title: str) -> str:
    """A title reduced to lowercase words, so quotes, dashes and entity styles do not matter."""
    title = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(re.findall(r"\w+", title))


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"

"""RSS 0.9x/1.0/2.0 and Atom, read with feedparser and mapped onto ``RawItem``s.

feedparser is run with its HTML sanitizer and URI resolver off: content stays as the feed gave
it (sanitizing for email happens later, and JSON Feed content could not be sanitized here the
same way anyway), and relative URLs are resolved by ``normalize`` against the post's own URL,
which feedparser cannot know. Its xml:base handling is still used: each content keeps the base
in effect where it was written.
"""

from __future__ import annotations

import io
import re
from xml.sax import SAXException, SAXParseException

from syndicate.feeds import dates, markup
from syndicate.feeds.errors import FeedError
from syndicate.feeds.normalize import FeedContext, RawItem, build_posts, clean_text, looks_like_image
from syndicate.model import ParsedFeed

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_DECLARES_ENCODING = re.compile(rb"^\s*<\?xml[^>]*\bencoding\s*=", re.I)
_NON_HTTP_SCHEME = re.compile(r"^(?!https?:)[a-zA-Z][a-zA-Z0-9+.-]*:", re.I)
# An RSS <author> is "email (Name)"; feedparser splits some of those wrongly (non-ASCII names).
_EMAIL_AND_NAME = re.compile(r"^\s*[^\s@()]+@[^\s()]+\s*\((?P<name>[^()]+)\)\s*$")
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def parse_xml_feed(body: bytes, url: str, content_type: str | None) -> ParsedFeed:
    doc = _feedparser(body, url, content_type)
    if not doc.get("version") and not doc.entries:
        raise FeedError(url, f"not a feed ({_what_it_is(body, doc)})", kind="not_a_feed")
    context = _context(doc.feed, url)
    posts, warnings = build_posts([_item(entry) for entry in doc.entries], context)
    if doc.get("bozo"):
        problem = _bozo_text(doc.get("bozo_exception"))
        if not posts and _is_xml_error(doc.get("bozo_exception")):
            raise FeedError(url, f"malformed XML and no items could be read: {problem}", kind="not_a_feed")
        warnings.insert(0, f"read leniently: {problem}")
    return ParsedFeed(
        title=clean_text(_title(doc.feed)),
        link=context.home or "",
        format=doc.get("version") or "unknown",
        posts=posts,
        warnings=warnings,
    )


def _feedparser(body: bytes, url: str, content_type: str | None):
    import feedparser  # only when a body arrived: an unchanged poll (all 304s) never loads it

    try:
        return feedparser.parse(
            io.BytesIO(body),  # never the bytes themselves: feedparser would try them as a file name
            sanitize_html=False,
            resolve_relative_uris=False,
            response_headers=_charset_header(body, content_type),
        )
    except Exception as exc:
        # feedparser reports bad XML as "bozo" rather than raising; anything it does raise on
        # hostile input must still be this feed's one-line error, not a crash of the whole poll.
        raise FeedError(url, f"could not be read ({type(exc).__name__} in the XML parser)",
                        kind="not_a_feed") from exc


def _charset_header(body: bytes, content_type: str | None) -> dict[str, str] | None:
    """The HTTP charset, but only for a document that does not declare its own encoding.

    Servers often label feeds with a wrong charset (Apache's old ISO-8859-1 default) or a
    non-XML type (text/html, text/plain), which feedparser would obey or flag; the document's
    own BOM or XML declaration is more trustworthy. Undeclared Latin-1 feeds still benefit.
    """
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type or "", re.I)
    if not match or body.startswith(_BOMS) or _DECLARES_ENCODING.match(body[:200]):
        return None
    return {"content-type": f"application/xml; charset={match.group(1)}"}


def _context(feed: dict, url: str) -> FeedContext:
    feed_url = url if markup.is_absolute_http(url) else None
    home = markup.resolve(feed_url, feed.get("link") or "")
    return FeedContext(feed_url=feed_url, home=home if markup.is_absolute_http(home) else None,
                       author=_author(feed))


def _item(entry: dict) -> RawItem:
    content_html, content_base = _content(entry)
    summary = entry.get("summary_detail") or {}
    return RawItem(
        guid=entry.get("id") or "",
        link=_link(entry),
        title=_title(entry),
        content_html=content_html,
        content_base=content_base,
        summary=entry.get("summary") or "",
        summary_is_html=summary.get("type", "text/html") in _HTML_TYPES,
        author=_author(entry),
        categories=[tag.get("term") or tag.get("label") or "" for tag in entry.get("tags") or []],
        images=_images(entry),
        published=dates.from_feedparser(entry.get("published"), entry.get("published_parsed")),
        # dict.get: feedparser's own get() maps a missing "updated" to "published" (with a
        # DeprecationWarning); an item that was never updated has no update date.
        updated=dates.from_feedparser(dict.get(entry, "updated"), dict.get(entry, "updated_parsed")),
    )


def _link(entry: dict) -> str:
    # FeedBurner rewrites links to its (now dead) redirector; origLink is the post itself.
    if entry.get("feedburner_origlink"):
        return entry["feedburner_origlink"]
    # feedparser falls back to the guid or Atom id when there is no HTML link; that is only a
    # link when it is a web address ("abc123", "tag:...", "urn:uuid:..." are not), and a post
    # whose only alternate is a PDF should still link to that PDF.
    link = entry.get("link") or ""
    if link and (not entry.get("guidislink") or markup.is_absolute_http(link)):
        return link
    alternates = [x.get("href") or "" for x in entry.get("links") or [] if x.get("rel", "alternate") == "alternate"]
    return next((href for href in alternates if not _NON_HTTP_SCHEME.match(href)), "")


def _content(entry: dict) -> tuple[str, str]:
    """(HTML, its xml:base): the richest HTML content, else the summary, else plain text.

    feedparser files media:description under ``content`` as text/plain, so plain-text content
    is the last resort, not the first.
    """
    contents = [c for c in entry.get("content") or [] if (c.get("value") or "").strip()]
    html = [c for c in contents if c.get("type") in _HTML_TYPES]
    if html:
        best = max(html, key=lambda c: len(c["value"]))
        return best["value"], best.get("base") or ""
    summary = entry.get("summary_detail") or {}
    if (summary.get("value") or "").strip():
        return _as_html(summary), summary.get("base") or ""
    if contents:
        return _as_html(contents[0]), contents[0].get("base") or ""
    return "", ""


def _as_html(detail: dict) -> str:
    value = detail.get("value") or ""
    return value if detail.get("type", "text/html") in _HTML_TYPES else markup.plain_to_html(value)


def _title(node: dict) -> str:
    detail = node.get("title_detail") or {}
    title = node.get("title") or ""
    return markup.to_text(title) if detail.get("type") in _HTML_TYPES else markup.collapse(title)


def _author(node: dict) -> str:
    if match := _EMAIL_AND_NAME.match(node.get("author") or ""):
        return match.group("name").strip()
    names = [a.get("name") or "" for a in node.get("authors") or [] if isinstance(a, dict)]
    names = [n.strip() for n in names if n.strip()]
    if names:
        return ", ".join(dict.fromkeys(names))
    author = (node.get("author") or "").strip()
    return "" if "@" in author and " " not in author else author  # a bare e-mail address is no byline


def _images(entry: dict) -> list[tuple[str, str]]:
    """Images the feed names for the item, in the order of preference."""
    found = [(m.get("url", ""), "") for m in entry.get("media_content") or []
             if looks_like_image(m.get("url", ""), m.get("type"), m.get("medium"))]
    found += [(t.get("url", ""), "") for t in entry.get("media_thumbnail") or []]
    found += [(e.get("href", ""), "") for e in entry.get("enclosures") or []
              if looks_like_image(e.get("href", ""), e.get("type"))]
    if isinstance(entry.get("image"), dict):  # itunes:image on an episode
        found.append((entry["image"].get("href", ""), ""))
    return [(url.strip(), alt) for url, alt in found if url and url.strip()]


def _bozo_text(exc: BaseException | None) -> str:
    if isinstance(exc, SAXParseException):
        return f"{exc.getMessage()} (line {exc.getLineNumber()})"
    if exc is None:
        return "not well-formed"
    return markup.collapse(str(exc)) or type(exc).__name__


def _is_xml_error(exc: BaseException | None) -> bool:
    import feedparser  # loaded already by _feedparser

    return isinstance(exc, SAXException) or not isinstance(exc, feedparser.ThingsNobodyCaresAboutButMe)


def _what_it_is(body: bytes, doc: dict) -> str:
    head = body[:2048]
    text = head.decode("latin-1")
    text = re.sub(r"^(\ufeff|\xef\xbb\xbf|\s|<\?.*?\?>|<!--.*?-->)+", "", text, flags=re.S)
    if re.match(r"<!doctype\s+html|<(html|head|body|meta|title|script|div|p|h1|table)\b", text, re.I):
        return "an HTML page"
    if b"\x00" in head and not head.startswith(_BOMS):
        return "binary data"
    root = re.match(r"<([A-Za-z_][\w:.-]*)", text)
    if root and not doc.get("bozo"):
        return f"XML, but <{root.group(1)}> is not RSS or Atom"
    if doc.get("bozo") and root:
        return f"malformed XML: {_bozo_text(doc.get('bozo_exception'))}"
    return "no RSS, Atom or JSON Feed found"

"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1), read by our own code.

feedparser reads only XML. JSON Feed is simple enough that the work is in being forgiving:
real feeds send numbers as ids, null for missing fields, "" for absent icons, 1.0's ``author``
object next to 1.1's ``authors`` list, and dates without a time zone (read as UTC).
"""

from __future__ import annotations

import json
from typing import Any

from syndicate.feeds import dates, markup
from syndicate.feeds.errors import FeedError
from syndicate.feeds.normalize import FeedContext, RawItem, build_posts, clean_text, looks_like_image
from syndicate.model import ParsedFeed

_VERSION_PREFIX = "jsonfeed.org/version/"


def parse_json_feed(body: bytes, url: str) -> ParsedFeed:
    doc = _load(body, url)
    feed_url = url if markup.is_absolute_http(url) else None
    home = markup.resolve(feed_url, _text(doc.get("home_page_url")))
    context = FeedContext(
        feed_url=feed_url,
        home=home if markup.is_absolute_http(home) else None,
        author=_authors(doc),
    )
    raw_items = doc.get("items")
    items = [_item(entry) for entry in raw_items if isinstance(entry, dict)] if isinstance(raw_items, list) else []
    posts, warnings = build_posts(items, context)
    if not isinstance(raw_items, list):
        warnings.insert(0, "JSON Feed without an 'items' list")
    elif skipped := len(raw_items) - len(items):
        warnings.insert(0, f"{skipped} JSON Feed {'item that is' if skipped == 1 else 'items that are'} "
                           "not an object ignored")
    return ParsedFeed(
        title=clean_text(markup.collapse(_text(doc.get("title")))),
        link=context.home or "",
        format=_format(doc),
        posts=posts,
        warnings=warnings,
    )


def looks_like_json(body: bytes, content_type: str | None) -> bool:
    """A JSON document: by its media type, or by its first character when the server says nothing
    useful (feeds are often served as text/plain or application/octet-stream)."""
    first = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first in (b"{", b"["):
        return True
    # A JSON media type is believed unless the body is plainly markup (a mislabeled RSS file).
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media.endswith("json") and first != b"<"


def _load(body: bytes, url: str) -> dict:
    try:
        doc = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise FeedError(url, "not a feed (JSON that is not UTF-8)", kind="not_a_feed") from None
    except json.JSONDecodeError as exc:
        raise FeedError(url, f"not a feed (broken JSON: {exc.msg} at line {exc.lineno})", kind="not_a_feed") from None
    if not isinstance(doc, dict) or not _is_json_feed(doc):
        raise FeedError(url, "not a feed (JSON, but not a JSON Feed)", kind="not_a_feed")
    return doc


def _is_json_feed(doc: dict) -> bool:
    # The version URL is required; some generators get it subtly wrong ("http://", no "/1"),
    # so an "items" list is accepted as proof too.
    return _VERSION_PREFIX in _text(doc.get("version")) or isinstance(doc.get("items"), list)


def _format(doc: dict) -> str:
    version = _text(doc.get("version")).rsplit("/", 1)[-1]
    return {"1": "json10", "1.0": "json10", "1.1": "json11"}.get(version, "json")


def _item(entry: dict) -> RawItem:
    content_html = _text(entry.get("content_html"))
    if not content_html and (plain := _text(entry.get("content_text"))):
        content_html = markup.plain_to_html(plain)
    images = [(_text(entry.get(key)), "") for key in ("image", "banner_image")]
    images += [(_text(a.get("url")), _text(a.get("title")))
               for a in _dicts(entry.get("attachments"))
               if looks_like_image(_text(a.get("url")), _text(a.get("mime_type")) or None)]
    return RawItem(
        guid=_text(entry.get("id")),
        link=_text(entry.get("url")) or _text(entry.get("external_url")),
        title=_text(entry.get("title")),
        content_html=content_html,
        summary=_text(entry.get("summary")),
        summary_is_html=False,  # JSON Feed's summary is plain text by definition
        author=_authors(entry),
        categories=[_text(tag) for tag in _list(entry.get("tags"))],
        images=[(u, alt) for u, alt in images if u],
        published=dates.parse_text(_text(entry.get("date_published"))),
        updated=dates.parse_text(_text(entry.get("date_modified"))),
    )


def _authors(obj: dict) -> str:
    people = _dicts(obj.get("authors")) or _dicts(obj.get("author"))
    names = [_text(p.get("name")) for p in people]
    return ", ".join(n.strip() for n in names if n.strip())


def _text(value: Any) -> str:
    """A string field, tolerating numbers (ids) and null."""
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) else ""


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict]:
    """Objects of a field that should be a list of objects (1.0's lone ``author`` object too)."""
    if isinstance(value, dict):
        return [value]
    return [v for v in _list(value) if isinstance(v, dict)]

"""How a fetched document becomes a ``ParsedFeed``: sniff the format, read it, normalize it.

XML (RSS, Atom) goes to feedparser via ``xmlfeed``, JSON Feed to our own ``jsonfeed``; both
hand their items to ``normalize``. A document that is no feed at all (an HTML error page, an
empty body, garbage) is a ``FeedError``; a damaged feed that still yields posts is accepted,
with what was wrong listed in ``ParsedFeed.warnings``.
"""

from __future__ import annotations

from syndicate.feeds.errors import FeedError
from syndicate.feeds.jsonfeed import looks_like_json, parse_json_feed
from syndicate.feeds.xmlfeed import parse_xml_feed
from syndicate.model import ParsedFeed


def parse(body: bytes, *, url: str, content_type: str | None = None) -> ParsedFeed:
    """Read a feed document. ``url`` is where it came from (after redirects): relative links
    resolve against it, and errors name it. ``content_type`` is the HTTP header, if any."""
    if body is None or not body.strip(b" \t\r\n\x00\xef\xbb\xbf"):
        raise FeedError(url, "empty document (no feed content)", kind="not_a_feed")
    if looks_like_json(body, content_type):
        return parse_json_feed(body, url)
    return parse_xml_feed(body, url, content_type)

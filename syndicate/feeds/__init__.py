"""Feeds: fetch a feed (conditional GET, bounded) and parse it into normalized posts.

    from syndicate.feeds import fetch, parse, FeedError
    result = fetch(url, etag=..., last_modified=...)
    if result.status != 304:
        feed = parse(result.body, url=result.final_url, content_type=result.content_type)
"""

from syndicate.feeds.errors import FeedError
from syndicate.feeds.fetch import FetchResult, fetch
from syndicate.feeds.normalize import normalize_url, split_fingerprint
from syndicate.feeds.parse import parse

__all__ = ["FeedError", "FetchResult", "fetch", "normalize_url", "parse", "split_fingerprint"]

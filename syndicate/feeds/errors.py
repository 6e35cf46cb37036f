"""The one error a feed fetch or parse raises, and how a feed location is shown in it.

A ``FeedError`` ends up in logs, the CLI and the ledger's ``last_error`` column, so its text is
one line a practice's staff can act on ("https://x/feed: HTTP 404 Not Found"): never a
traceback, never a password or token that was part of the URL.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters whose values are credentials often pasted into feed URLs (private podcast
# feeds, paywalled newsletters, "secret" RSS links).
_SECRET_PARAM = re.compile(r"(token|key|secret|pass|passwd|password|auth|sig|signature|session|code)$", re.I)
_MAX_LEN = 400


class FeedError(Exception):
    """A feed that could not be fetched or read; ``str()`` is one line: ``<where>: <problem>``.

    ``kind`` lets a caller tell a passing problem (``timeout``, ``connection``, ``http`` 5xx) from
    one that needs a person (``not_a_feed``, ``too_large``, ``http`` 404).
    """

    def __init__(self, location: str, problem: str, *, kind: str = "error", status: int | None = None):
        self.location = display_location(location)
        self.problem = _one_line(problem)
        self.kind = kind
        self.status = status  # the HTTP status, for kind == "http"
        super().__init__(f"{self.location}: {self.problem}" if self.location else self.problem)

    def __reduce__(self):
        # Celery and multiprocessing pickle exceptions; the default would call __init__(message).
        return (type(self), (self.location, self.problem), self.__dict__)


def display_location(location: str) -> str:
    """A URL or path fit for a message: no ``user:password@``, secret query values masked."""
    location = _one_line(location or "")
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", location):
        return location  # a file path: nothing to hide
    try:
        parts = urlsplit(location)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*/:")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # a malformed URL (bad port, bad IPv6 literal): show its scheme and host only
        return re.sub(r"//[^/@]*@", "//", location.split("?", 1)[0])


def _one_line(text: str) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= _MAX_LEN else text[: _MAX_LEN - 1] + "…"

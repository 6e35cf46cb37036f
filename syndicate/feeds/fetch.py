"""How a feed is fetched: over HTTP(S) with a conditional GET, or read from a local file.

Every fetch is bounded: one ``timeout`` budget for the whole fetch (connect, redirects and the
body), and ``max_bytes`` for the body after decompression (so a gzip bomb is cut off too).
Redirects are followed by hand so each hop is recorded and capped; a caller can then update a
feed that moved permanently. Anything that goes wrong becomes a one-line ``FeedError``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import requests
import urllib3

from syndicate.feeds.errors import FeedError, display_location

MAX_REDIRECTS = 10
_CHUNK = 64 * 1024
_REDIRECT_CODES = {301, 302, 303, 307, 308}
_PERMANENT_CODES = {301, 308}
_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


@dataclass
class FetchResult:
    status: int  # 200 (or another 2xx) with a body; 304 when the conditional GET says "unchanged"
    body: bytes | None
    etag: str | None = None  # validators to send next time
    last_modified: str | None = None
    final_url: str = ""  # where the document really came from (after redirects); the path for files
    redirects: list[str] = field(default_factory=list)  # the URL each redirect led to, in order
    content_type: str | None = None
    # True when every redirect was permanent (301/308): the caller may store final_url instead.
    moved_permanently: bool = False


def fetch(
    location: str,
    *,
    etag: str | None = None,
    last_modified: str | datetime | None = None,
    timeout: float | timedelta = 20.0,
    max_bytes: int = 10 * 1024 * 1024,
    user_agent: str = "Syndicate/0.1",
    session: requests.Session | None = None,
    internal_redirects: bool = False,
) -> FetchResult:
    """Fetch a feed from an http(s) URL, a ``file://`` URL or a plain file path.

    ``etag`` and ``last_modified`` are the validators of the previous fetch (sent as
    If-None-Match / If-Modified-Since). Pass a ``requests.Session`` to reuse connections across
    many feeds; without one a short-lived session is used. A redirect to another origin on a
    loopback, private or link-local address is refused unless ``internal_redirects``: a feed on
    the internet must not be able to make the server read its own network (SSRF).
    """
    match = _URL_SCHEME.match(location)
    scheme = match.group(1).lower() if match else ""
    if scheme in ("http", "https"):
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        attempt = _HttpFetch(location, etag, _as_header(last_modified), seconds, max_bytes, user_agent,
                             internal_redirects)
        if session is not None:
            return attempt.run(session)
        with requests.Session() as own:
            return attempt.run(own)
    if scheme == "file":
        return _read_file(location, _file_url_path(location), max_bytes)
    if scheme:
        raise FeedError(location, f"unsupported URL scheme {scheme!r} (use http, https or a file path)",
                        kind="config")
    return _read_file(location, Path(location).expanduser(), max_bytes)


# --- HTTP -----------------------------------------------------------------------------------


def common_headers() -> dict[str, str]:
    """The headers of every feed request besides User-Agent and the validators, as requests sends
    them (its defaults with our Accept): recorded for the quiet run (engine/quiet.py)."""
    headers = dict(requests.utils.default_headers())
    headers.pop("User-Agent", None)
    headers["Accept"] = _ACCEPT
    return headers



@dataclass
class _HttpFetch:
    """One fetch of one feed URL: its validators, its deadline, and the hops taken so far."""

    location: str  # the URL asked for: every error names it
    etag: str | None
    last_modified: str | None
    timeout: float
    max_bytes: int
    user_agent: str
    internal_redirects: bool = False
    url: str = ""  # the URL being requested now (after redirects)
    redirects: list[str] = field(default_factory=list)
    permanent: bool = True  # every hop so far was a 301/308
    deadline: float = 0.0

    def run(self, session: requests.Session) -> FetchResult:
        self.url, self.deadline = self.location, time.monotonic() + self.timeout
        while True:
            with self._send(session) as response:
                if response.status_code not in _REDIRECT_CODES:
                    return self._finish(response)
                self._follow(response)

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept": _ACCEPT}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers

    def _send(self, session: requests.Session) -> requests.Response:
        remaining = self._remaining()
        try:
            # The connect timeout is capped separately so a dead host fails fast even with a
            # generous overall budget; the read timeout bounds each wait for the server.
            return session.get(self.url, headers=self._headers(), stream=True, allow_redirects=False,
                               timeout=(min(remaining, 10.0), remaining))
        except requests.RequestException as exc:
            raise self._error(exc) from None

    def _follow(self, response: requests.Response) -> None:
        target = response.headers.get("Location", "").strip()
        if not target:
            raise FeedError(self.location, f"HTTP {response.status_code} redirect without a Location header",
                            kind="http", status=response.status_code)
        try:
            target = urljoin(self.url, target)
            scheme = urlsplit(target).scheme
        except ValueError:
            raise FeedError(self.location, "redirected to an invalid address", kind="http") from None
        if scheme not in ("http", "https"):
            raise FeedError(self.location, f"redirected to a non-HTTP address ({display_location(target)})",
                            kind="http")
        if not self.internal_redirects and _origin(target) != _origin(self.url) and _is_internal(target):
            raise FeedError(self.location, f"redirected to an internal address ({display_location(target)}); "
                            "set fetch.internal_redirects = true if the feed really lives there", kind="http")
        if len(self.redirects) >= MAX_REDIRECTS:
            raise FeedError(self.location, f"too many redirects (more than {MAX_REDIRECTS})", kind="http")
        self.permanent = self.permanent and response.status_code in _PERMANENT_CODES
        self.redirects.append(target)
        self.url = target

    def _finish(self, response: requests.Response) -> FetchResult:
        status = response.status_code
        if status == 304 and not (self.etag or self.last_modified):
            raise FeedError(self.location, "HTTP 304 Not Modified to a request that was not conditional",
                            kind="http", status=304)
        if status != 304 and not 200 <= status < 300:
            raise FeedError(self.location, _status_text(status, response.reason) + self._via(),
                            kind="http", status=status)
        unchanged = status == 304
        return FetchResult(
            status=status,
            body=None if unchanged else self._read_body(response),
            # A 304 may omit the validators; the ones we sent are still the current ones then.
            etag=response.headers.get("ETag") or (self.etag if unchanged else None),
            last_modified=response.headers.get("Last-Modified") or (self.last_modified if unchanged else None),
            final_url=self.url,
            redirects=self.redirects,
            content_type=response.headers.get("Content-Type"),
            moved_permanently=self.permanent and bool(self.redirects),
        )

    def _read_body(self, response: requests.Response) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise _too_large(self.location, self.max_bytes)
        chunks, size = [], 0
        try:
            # read1 returns whatever arrived (decompressed), so the deadline is checked after
            # every network read: iter_content would wait for a whole chunk from a dripping server.
            while chunk := response.raw.read1(_CHUNK, decode_content=True):
                size += len(chunk)
                if size > self.max_bytes:
                    raise _too_large(self.location, self.max_bytes)
                chunks.append(chunk)
                self._remaining()
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise self._error(exc) from None
        return b"".join(chunks)

    def _remaining(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise FeedError(self.location, f"timed out after {self.timeout:g}s", kind="timeout")
        return remaining

    def _via(self) -> str:
        return "" if self.url == self.location else f" (after redirect to {display_location(self.url)})"

    def _error(self, exc: Exception) -> FeedError:
        reason, kind = _describe(exc, self.url, self.timeout)
        return FeedError(self.location, reason + self._via(), kind=kind)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _is_internal(url: str) -> bool:
    """Whether URL's host is (or resolves to) a loopback, private, link-local or reserved address."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False  # unresolvable: the request itself will fail and say so
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_multicast
                or ip.is_unspecified):
            return True
    return False


def _status_text(status: int, reason: str | None) -> str:
    if not reason:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    return f"HTTP {status} {reason}".rstrip()


def _as_header(value: str | datetime | None) -> str | None:
    if isinstance(value, datetime):
        return format_datetime(value, usegmt=True) if value.tzinfo else None
    return value


def _too_large(location: str, max_bytes: int) -> FeedError:
    return FeedError(location, f"larger than {_size(max_bytes)} cap", kind="too_large")


def _size(n: int) -> str:
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:g} {unit}" if n % scale == 0 else f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _describe(exc: Exception, url: str, timeout: float) -> tuple[str, str]:
    """A requests/urllib3 exception (whose text is a nested repr) as (one plain reason, kind)."""
    chain = list(_causes(exc))
    names = {type(e).__name__ for e in chain}
    if isinstance(exc, requests.Timeout) or names & {"ReadTimeoutError", "ConnectTimeoutError", "TimeoutError"}:
        return f"timed out after {timeout:g}s", "timeout"
    if isinstance(exc, requests.exceptions.SSLError | urllib3.exceptions.SSLError):
        verify = any("CERTIFICATE_VERIFY_FAILED" in str(e) for e in chain)
        return f"TLS error: {'certificate verify failed' if verify else 'handshake failed'}", "connection"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused", "connection"
    if names & {"NameResolutionError", "gaierror"}:
        return f"host not found ({urlsplit(url).hostname})", "connection"
    if isinstance(exc, requests.exceptions.ContentDecodingError) or "DecodeError" in names:
        return "response body could not be decompressed", "connection"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "ProtocolError" in names:
        return "connection broken while reading the response", "connection"
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
        return "not a valid URL", "config"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed", "connection"
    return f"request failed ({type(exc).__name__})", "connection"


def _causes(exc: BaseException):
    """The exception and everything it wraps (requests nests urllib3 errors in args/reason)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [*current.args, getattr(current, "reason", None), current.__cause__, current.__context__]
        stack.extend(e for e in nested if isinstance(e, BaseException))


# --- Local files ----------------------------------------------------------------------------


def _file_url_path(location: str) -> Path:
    parts = urlsplit(location)
    if parts.netloc not in ("", "localhost"):
        raise FeedError(location, "file:// URLs must name a local file (no host)", kind="config")
    return Path(unquote(parts.path))


def _read_file(location: str, path: Path, max_bytes: int) -> FetchResult:
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size > max_bytes:
                raise _too_large(location, max_bytes)
            body = handle.read(max_bytes + 1)  # a growing file or /dev/stdin: stat is not enough
    except FileNotFoundError:
        raise FeedError(location, "file not found", kind="config") from None
    except IsADirectoryError:
        raise FeedError(location, "is a directory, not a feed file", kind="config") from None
    except PermissionError:
        raise FeedError(location, "permission denied", kind="config") from None
    except OSError as exc:
        raise FeedError(location, f"cannot read file: {exc.strerror or type(exc).__name__}", kind="config") from None
    if len(body) > max_bytes:
        raise _too_large(location, max_bytes)
    return FetchResult(status=200, body=body, final_url=location)

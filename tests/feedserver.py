"""A small real HTTP server for tests that fetch feeds (no mocks: real sockets, real headers).

    server = FeedServer()                 # or the ``feed_server`` fixture from fixture()
    server.route("/feed.xml", body=b"<rss ...>", etag='"v1"', last_modified="Wed, 01 Nov 2026 ...")
    server.redirect("/old", "/feed.xml", status=301)
    fetch(server.url("/old"))
    server.hits["/feed.xml"]              # requests per path
    server.max_in_flight                  # the most requests it was answering at once

Routes can answer with any status and headers, honour If-None-Match / If-Modified-Since with a
304, redirect, wait before answering (``delay``), drip the body slowly (``drip``), omit
Content-Length, or gzip the body. Other test modules use it through ``fixture()``:

    from feedserver import fixture
    feed_server = fixture()
"""

from __future__ import annotations

import gzip
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str | None = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None  # an HTTP date
    location: str | None = None  # for redirects
    delay: float = 0.0  # seconds before the status line
    drip: float = 0.0  # seconds between body chunks of 1 KiB
    send_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    declared_length: int | None = None  # a Content-Length that lies (a body cut short)
    gzip: bool = False  # compress when the client accepts gzip


class FeedServer:
    """A threaded HTTP/1.0 server on 127.0.0.1 (or another loopback ``host``) at a free port,
    serving ``Route``s by path."""

    def __init__(self, routes: dict[str, Route] | None = None, host: str = "127.0.0.1"):
        self.routes: dict[str, Route] = dict(routes or {})
        self.hits: Counter[str] = Counter()
        self.requests: list[dict[str, str]] = []  # the headers of every request, in order
        self.in_flight = 0  # requests being answered now
        self.max_in_flight = 0  # the most at once since start
        self._count_lock = threading.Lock()
        self._stopping = threading.Event()
        self.host = host
        self._httpd = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def route(self, path: str, body: bytes = b"", **options) -> Route:
        self.routes[path] = Route(body=body, **options)
        return self.routes[path]

    def redirect(self, path: str, to: str, status: int = 302) -> Route:
        return self.route(path, status=status, location=to, content_type=None)

    def close(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a delay or drip
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FeedServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait(self, seconds: float) -> bool:
        """Sleep unless the server is stopping; True when it is."""
        return self._stopping.wait(seconds) if seconds > 0 else self._stopping.is_set()


def fixture(name: str = "feed_server"):
    """A pytest fixture giving each test its own running ``FeedServer``, closed afterwards."""

    @pytest.fixture(name=name)
    def _feed_server():
        with FeedServer() as server:
            yield server

    return _feed_server


def _handler_for(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        feed_server = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    feed_server: FeedServer
    protocol_version = "HTTP/1.0"  # one request per connection: simple and close-delimited bodies

    def do_GET(self):  # noqa: N802 (the stdlib's naming)
        server = self.feed_server
        if not hasattr(server, "_count_lock"):  # another server class using this handler (bench/feedsrv.py)
            return self._answer(server)
        with server._count_lock:
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        self._counted = True
        try:
            return self._answer(server)
        finally:
            self._uncount()

    def _uncount(self) -> None:
        # Before the response is written: a client may send its next request as soon as it has
        # read this one, possibly before this handler returns.
        if getattr(self, "_counted", False):
            self._counted = False
            with self.feed_server._count_lock:
                self.feed_server.in_flight -= 1

    def _answer(self, server: FeedServer):
        server.hits[self.path] += 1
        server.requests.append({k.lower(): v for k, v in self.headers.items()})
        route = server.routes.get(self.path)
        if route is None:
            return self._send(404, b"not found", {"Content-Type": "text/plain"})
        if server.wait(route.delay):
            return None
        if _not_modified(route, self.headers):
            return self._send(304, b"", _validators(route), send_length=False)
        headers = {**_validators(route), **route.headers}
        if route.content_type:
            headers["Content-Type"] = route.content_type
        if route.location:
            headers["Location"] = route.location
        body = route.body
        if route.gzip and "gzip" in self.headers.get("Accept-Encoding", ""):
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        if route.declared_length is not None:
            headers["Content-Length"] = str(route.declared_length)
        send_length = route.send_length and route.declared_length is None
        return self._send(route.status, body, headers, send_length=send_length, drip=route.drip)

    def _send(self, status: int, body: bytes, headers: dict[str, str], send_length: bool = True,
              drip: float = 0.0) -> None:
        self._uncount()
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if send_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self._write(body, drip)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a size cap or a timeout under test): expected

    def _write(self, body: bytes, drip: float) -> None:
        if not drip:
            self.wfile.write(body)
            return
        for start in range(0, len(body), 1024):
            self.wfile.write(body[start:start + 1024])
            self.wfile.flush()
            if self.feed_server.wait(drip):
                return

    def log_message(self, format, *args):  # noqa: A002 (the stdlib's signature)
        pass  # keep test output quiet


def _validators(route: Route) -> dict[str, str]:
    headers = {}
    if route.etag:
        headers["ETag"] = route.etag
    if route.last_modified:
        headers["Last-Modified"] = route.last_modified
    return headers


def _not_modified(route: Route, request_headers) -> bool:
    if route.status != 200:
        return False
    if route.etag and (tags := request_headers.get("If-None-Match")):
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
        return route.etag in [t.strip() for t in tags.split(",")] or tags.strip() == "*"
    since = request_headers.get("If-Modified-Since")
    if route.last_modified and since:
        try:
            return parsedate_to_datetime(route.last_modified) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


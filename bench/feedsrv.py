"""The 71 corpus feeds served as COUNT feed URLs, each answer after DELAY, with ETag/304.

    python bench/feedsrv.py --count 200 --hosts 20 --delay 0.02

Runs in its own process (its CPU is not charged to the poller under test), prints one JSON
line {"urls": [...]} and serves until SIGTERM. URL i serves corpus file i mod 71 and lives on
loopback host 127.0.0.(1 + i mod HOSTS), so the feeds of one host are spread through the list
as in a real subscription list. The request handling (delay, ETag / If-None-Match ->
304, Last-Modified) is tests/feedserver.py's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import threading
from collections import Counter
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import shared_feeds  # noqa: E402
from tests.feedserver import Route, _handler_for  # noqa: E402

LAST_MODIFIED = "Mon, 24 Nov 2025 08:00:00 GMT"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many pollers at once must not overflow the listen backlog


class CorpusServer:
    """The state tests/feedserver.py's handler expects (routes, hits, requests, wait)."""

    def __init__(self, count: int, hosts: int, delay: float, port: int = 0):
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[dict[str, str]] = []
        self._stopping = threading.Event()
        files = sorted(p for p in shared_feeds().iterdir() if p.suffix in (".xml", ".json"))
        self.servers = []
        for h in range(hosts):
            httpd = _Server((f"127.0.0.{1 + h}", port), _handler_for(self))
            self.servers.append(httpd)
        self.urls = []
        for i in range(count):
            src = files[i % len(files)]
            body = src.read_bytes()
            path = f"/{i:03d}/{src.name}"
            ctype = "application/feed+json" if src.suffix == ".json" else "application/xml"
            etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
            self.routes[path] = Route(body=body, content_type=ctype, etag=etag, last_modified=LAST_MODIFIED,
                                      delay=delay)
            host, port_ = self.servers[i % hosts].server_address[:2]
            self.urls.append(f"http://{host}:{port_}{path}")

    def wait(self, seconds: float) -> bool:
        return self._stopping.wait(seconds) if seconds > 0 else self._stopping.is_set()

    def serve(self) -> None:
        threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
                   for s in self.servers]
        for t in threads:
            t.start()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        self._stopping.set()
        for s in self.servers:
            s.shutdown()
            s.server_close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.02)
    args = parser.parse_args()
    server = CorpusServer(args.count, args.hosts, args.delay)
    print(json.dumps({"urls": server.urls}), flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

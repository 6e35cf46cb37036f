"""A prototype concurrent poll driver, to show what concurrency does to the poll figures.

The library polls feeds one after another (engine/runner.py ``run_once``: ``for feed in
settings.feeds: poll_feed(...)``), so 200 feeds pay 200 round trips in a row. This driver
calls the very same ``poll_feed`` from a bounded thread pool, with at most ``per_host``
requests in flight to any one host (politeness: a site with many feeds is not hammered).

It is a measurement aid, not library code: the proposal it supports is in bench/RESULTS.md.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine.poll import PollResult, poll_feed
from syndicate.settings import Settings


def poll_concurrently(factory: sessionmaker[Session], settings: Settings, now: datetime, *,
                      workers: int = 16, per_host: int = 4) -> list[PollResult]:
    host_slots: dict[str, threading.Semaphore] = defaultdict(lambda: threading.Semaphore(per_host))
    lock = threading.Lock()

    def slot(url: str) -> threading.Semaphore:
        with lock:
            return host_slots[urlsplit(url).netloc.lower()]

    def one(feed):
        with slot(settings.feed_location(feed)):
            return poll_feed(factory, settings, feed, now)

    # Interleave hosts so the pool is not filled with feeds all waiting on one host's slots.
    by_host: dict[str, list] = defaultdict(list)
    for feed in settings.feeds:
        by_host[urlsplit(settings.feed_location(feed)).netloc.lower()].append(feed)
    order = [f for group in _round_robin(list(by_host.values())) for f in group]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, order))


def _round_robin(groups: list[list]):
    for i in range(max((len(g) for g in groups), default=0)):
        yield [g[i] for g in groups if i < len(g)]

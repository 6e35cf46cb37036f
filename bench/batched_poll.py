"""A prototype batched poll driver: what the poll goals need beyond concurrency.

``poll_feed`` pays, per feed and whatever the answer, a transaction to read the validators
and one to record the poll, a fresh ``requests.Session``, and (for a changed feed) one
INSERT statement per post. For an unchanged feed that bookkeeping costs more CPU than the
conditional GET itself. This driver keeps every rule of ``poll_feed`` (it calls the same
``fetch``, ``parse`` and ``_record_posts``) but:

1. reads every feed's validators in one query (creating missing rows first);
2. fetches concurrently with one reused ``requests.Session`` per thread and at most
   ``per_host`` requests in flight per host;
3. parses and records changed feeds in a pool of ``processes`` worker processes, each as
   ``poll_feed`` does (feedparser and the ORM are pure Python: threads cannot use the
   second core);
4. records every 304 and every error in one UPDATE each.

It is a measurement aid, not library code: the proposal it supports is in bench/RESULTS.md.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime
from urllib.parse import urlsplit

import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine import poll as poll_mod
from syndicate.engine.poll import PollResult
from syndicate.feeds import FeedError, fetch, parse
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Feed
from syndicate.ledger.upsert import insert_ignore
from syndicate.settings import Settings


def _fresh_process() -> None:
    from syndicate.ledger.db import close_ledger

    close_ledger()  # a forked child must not share the parent's database connections


def _parse_and_record(settings: Settings, name: str, feed_id: int, fetched, location: str,
                      now: datetime) -> PollResult:
    """What poll_feed does with a changed document, in a worker process."""
    cfg = next(f for f in settings.feeds if f.name == name)
    factory = open_ledger(settings.store_url)
    try:
        parsed = parse(fetched.body, url=fetched.final_url or location, content_type=fetched.content_type)
    except FeedError as exc:
        return PollResult(name, "error", error=str(exc))
    result = poll_mod._record_posts(factory, feed_id, cfg, parsed.posts, now)
    result.warnings = parsed.warnings
    with transaction(factory) as s:
        feed = s.get(Feed, feed_id)
        feed.etag, feed.last_modified = fetched.etag, fetched.last_modified
        feed.final_url, feed.title = fetched.final_url, parsed.title
        feed.polls += 1
        feed.last_polled_at = feed.last_ok_at = now
        feed.last_error = None
    return result


def poll_batched(factory: sessionmaker[Session], settings: Settings, now: datetime, *, workers: int = 16,
                 per_host: int = 4, processes: int = 2) -> list[PollResult]:
    feeds = {f.name: f for f in settings.feeds}
    with transaction(factory) as s:
        known = set(s.scalars(select(Feed.name)))
        for name, cfg in feeds.items():
            if name not in known:
                insert_ignore(s, Feed, {"name": name, "url": settings.feed_location(cfg), "polls": 0}, ["name"])
        rows = {r.name: (r.id, r.etag, r.last_modified, r.url) for r in s.scalars(select(Feed))}

    host_slots: dict[str, threading.Semaphore] = defaultdict(lambda: threading.Semaphore(per_host))
    lock, local = threading.Lock(), threading.local()
    fs = settings.fetch

    def get(name: str):
        location = settings.feed_location(feeds[name])
        _, etag, last_modified, url = rows[name]
        if url != location:  # moved in settings: validators no longer apply
            etag = last_modified = None
        with lock:
            slot = host_slots[urlsplit(location).netloc.lower()]
        if not hasattr(local, "session"):
            local.session = requests.Session()
        with slot:
            try:
                return name, fetch(location, etag=etag, last_modified=last_modified,
                                   timeout=fs.timeout.total_seconds(), max_bytes=fs.max_bytes,
                                   user_agent=fs.user_agent, session=local.session)
            except FeedError as exc:
                return name, exc

    results: list[PollResult] = []
    unchanged, errors, changed = [], {}, []
    parsers = None  # started on the first changed feed: an unchanged poll forks nothing
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for name, fetched in pool.map(get, list(feeds)):
            if isinstance(fetched, FeedError):
                errors[name] = str(fetched)
            elif fetched.status == 304:
                unchanged.append(name)
            else:
                if parsers is None:
                    parsers = ProcessPoolExecutor(max_workers=processes, initializer=_fresh_process)
                changed.append(parsers.submit(_parse_and_record, settings, name, rows[name][0], fetched,
                                              settings.feed_location(feeds[name]), now))
    if unchanged:
        with transaction(factory) as s:
            s.execute(update(Feed).where(Feed.id.in_([rows[n][0] for n in unchanged]))
                      .values(last_polled_at=now, last_ok_at=now, last_error=None))
        results += [PollResult(n, "unchanged") for n in unchanged]
    if parsers is not None:
        with parsers:
            for future in changed:
                result = future.result()
                if result.status == "error":
                    errors[result.feed] = result.error
                else:
                    results.append(result)
    if errors:
        with transaction(factory) as s:
            for name, message in errors.items():
                s.execute(update(Feed).where(Feed.id == rows[name][0]).values(last_polled_at=now, last_error=message))
        results += [PollResult(n, "error", error=m) for n, m in errors.items()]
    return results

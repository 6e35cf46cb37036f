"""Polling a feed: fetch it, parse it, and record its posts in the ledger.

The rules (DESIGN.md, "Feeds"): the first poll records what is there without sending it
(except the newest ``backfill`` posts); an http->https or permalink move is recognized by the
post's fingerprint and not resent; an edited post (same identity, new content) is updated,
not resent; a poll that suddenly finds more than ``flood_threshold`` new posts holds them for a
human; a failed fetch or a broken document records the error and forgets nothing.

``poll_feeds`` polls many feeds concurrently (a bounded thread pool, a bound per host) with the
ledger work batched; ``poll_feed`` is the same code for one feed. Overlapping polls of a feed are
harmless: posts and feeds are inserted with ON CONFLICT DO NOTHING on their unique keys.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate import __version__
from syndicate.engine.hosts import host_key, interleaved
from syndicate.feeds import FeedError, fetch, parse, split_fingerprint
from syndicate.feeds.fetch import FetchResult
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Feed, Post
from syndicate.ledger.upsert import insert_ignore_many
from syndicate.model import ParsedFeed, PostData
from syndicate.settings import Feed as FeedSettings
from syndicate.settings import Fetch as FetchSettings
from syndicate.settings import Settings

log = logging.getLogger(__name__)

# Which parser judged a kept unreadable body (feeds.unparsed): a newer version reads it again.
UNPARSED_BY = __version__


@dataclass
class PollResult:
    feed: str
    status: str  # "ok", "unchanged", "error"
    new: int = 0  # posts to send
    held: int = 0  # new posts held (a flood)
    recorded: int = 0  # seen but not sent (first poll beyond backfill, moved posts)
    edited: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def poll_feed(factory: sessionmaker[Session], settings: Settings, feed_cfg: FeedSettings,
              now: datetime) -> PollResult:
    """Poll one feed (the per-feed worker task, ``syndicate poll``): ``poll_feeds`` for one."""
    return poll_feeds(factory, settings, [feed_cfg], now, workers=1)[0]


def poll_feeds(factory: sessionmaker[Session], settings: Settings, feeds: Iterable[FeedSettings],
               now: datetime, *, workers: int | None = None, per_host: int | None = None,
               answered: dict[str, tuple[str | None, str | None, float]] | None = None) -> list[PollResult]:
    """Poll many feeds at once; the results are in the order of FEEDS.

    Fetching and parsing run in a pool of ``workers`` threads (default ``fetch.concurrency``),
    each with its own reused ``requests.Session``, and with at most ``per_host`` requests
    (default ``fetch.per_host``) in flight to any one host. The ledger work is batched and done
    by the calling thread: every feed's validators are read in one query, each changed feed's
    new posts are inserted with one statement in one transaction, and every 304 and every
    error is recorded in one UPDATE each at the end. A feed that fails affects no other.

    ANSWERED: 304s a quiet run of this same pass got moments ago before handing over
    (engine/quiet.py take_answered), by URL with the validators it sent: such a feed whose
    validators are still those is not asked again, its 304 is recorded as if asked now.
    """
    feeds = list(feeds)
    if not feeds:
        return []
    workers = max(1, min(workers or settings.fetch.concurrency, len(feeds)))
    per_host = max(1, per_host or settings.fetch.per_host)
    locations = [settings.feed_location(f) for f in feeds]
    rows = _feed_rows(factory, feeds, locations)
    results: list[PollResult | None] = [None] * len(feeds)
    unchanged: dict[int, float] = {}  # feed id -> seconds its conditional GET took
    failed: dict[int, dict] = {}  # feed id -> the columns its failure sets

    def settle(i: int, outcome: _Fetched | _Unreadable | FeedError) -> None:
        name, row = feeds[i].name, rows[i]
        if isinstance(outcome, _Unreadable):  # keep its validators: the same bytes are not read twice
            failed[row.id] = {"last_error": str(outcome.error), "etag": outcome.fetched.etag,
                              "last_modified": outcome.fetched.last_modified, "unparsed": UNPARSED_BY}
            results[i] = PollResult(name, "error", error=str(outcome.error))
        elif isinstance(outcome, FeedError):
            failed[row.id] = {"last_error": str(outcome)}
            if row.unparsed:  # the kept error is replaced by this one: the next poll reads the body again
                failed[row.id].update(etag=None, last_modified=None, unparsed=None)
            results[i] = PollResult(name, "error", error=str(outcome))
        elif outcome.parsed is None and row.unparsed:  # 304: the body that could not be read, again
            failed[row.id] = {"last_error": row.last_error}
            results[i] = PollResult(name, "error", error=row.last_error)
        elif outcome.parsed is None:  # 304
            unchanged[row.id] = outcome.seconds
            results[i] = PollResult(name, "unchanged")
        else:
            try:
                results[i] = _record_changed(factory, rows[i].id, feeds[i], outcome, now)
            except Exception as exc:  # a post the ledger refuses fails its feed, not the poll
                log.exception("recording feed %s failed", name)
                error = str(FeedError(feeds[i].url, f"could not record its posts ({type(exc).__name__})"))
                failed[rows[i].id] = {"last_error": error}
                results[i] = PollResult(name, "error", error=error)

    todo = []
    for i, location in enumerate(locations):
        got = (answered or {}).get(location)
        if got is not None and got[:2] == (rows[i].etag, rows[i].last_modified) and (got[0] or got[1]):
            settle(i, _Fetched(FetchResult(304, None, etag=got[0], last_modified=got[1], final_url=location),
                               None, got[2]))
        else:
            todo.append(i)
    settings_fetch = settings.fetch
    if not todo:
        pass  # every feed answered by the quiet run
    elif workers == 1 or len(todo) == 1:
        with requests.Session() as http:
            for i in todo:
                settle(i, _fetch_and_parse(settings_fetch, locations[i], rows[i], http, nullcontext()))
    else:
        _poll_in_threads(settings_fetch, locations, rows, settle, min(workers, len(todo)), per_host, todo)
    _record_polled(factory, unchanged, failed, now)
    return results  # type: ignore[return-value]  (every index settled)


@dataclass
class _Row:
    id: int
    etag: str | None
    last_modified: str | None
    unparsed: bool = False  # the validators are of a body that could not be read (its error: last_error)
    last_error: str | None = None


@dataclass
class _Fetched:
    fetched: FetchResult
    parsed: ParsedFeed | None  # None: 304 Not Modified
    seconds: float = 0.0  # the fetch itself, from the request to the last byte (not the slot's wait)


@dataclass
class _Unreadable:
    """A body that came with validators and could not be parsed: the error, and the validators
    to send next time (a 304 then means the same bytes: the same error, without a download)."""

    error: FeedError
    fetched: FetchResult


def _poll_in_threads(fetch_cfg: FetchSettings, locations: list[str], rows: list[_Row], settle,
                     workers: int, per_host: int, todo_indices: list[int]) -> None:
    hosts = [host_key(loc) for loc in locations]
    slots = {host: threading.BoundedSemaphore(per_host) for host in set(hosts) if host}
    local = threading.local()
    sessions: list[requests.Session] = []
    sessions_lock = threading.Lock()

    def http() -> requests.Session:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            with sessions_lock:
                sessions.append(session)
        return session

    def one(i: int) -> _Fetched | FeedError:
        slot = slots[hosts[i]] if hosts[i] else nullcontext()
        return _fetch_and_parse(fetch_cfg, locations[i], rows[i], http(), slot)

    # Daemon threads fed from a queue, not a ThreadPoolExecutor: the executor's threads are joined
    # when the process exits, so Ctrl-C would wait for a hanging fetch to reach its timeout.
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for k in interleaved([hosts[i] for i in todo_indices]):
        todo.put(todo_indices[k])
    done: queue.SimpleQueue[tuple[int, _Fetched | FeedError | None, BaseException | None]] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((i, one(i), None))
            except BaseException as exc:  # a bug, not a feed's fault: raised in the calling thread
                done.put((i, None, exc))

    threads = [threading.Thread(target=work, name=f"poll-{n}", daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    finished = False
    try:
        for _ in todo_indices:
            i, outcome, error = done.get()
            if error is not None:
                raise error
            settle(i, outcome)  # not kept: its document is freed once recorded
        finished = True
    finally:
        stop.set()
        if finished:  # else (interrupted) the threads may still be waiting on a server: leave them
            for thread in threads:
                thread.join()
            for session in sessions:
                session.close()


def _fetch_and_parse(fetch_cfg: FetchSettings, location: str, row: _Row, http: requests.Session,
                     slot) -> _Fetched | FeedError:
    try:
        with slot:  # held only while talking to the host; parsing happens after
            started = time.monotonic()
            fetched = fetch(location, etag=row.etag, last_modified=row.last_modified,
                            timeout=fetch_cfg.timeout.total_seconds(), max_bytes=fetch_cfg.max_bytes,
                            user_agent=fetch_cfg.user_agent, session=http,
                            internal_redirects=fetch_cfg.internal_redirects)
            seconds = time.monotonic() - started
        if fetched.status == 304:
            return _Fetched(fetched, None, seconds)
        try:
            parsed = parse(fetched.body, url=fetched.final_url or location, content_type=fetched.content_type)
        except FeedError as exc:
            return _Unreadable(exc, fetched) if fetched.etag or fetched.last_modified else exc
        return _Fetched(fetched, parsed, seconds)
    except FeedError as exc:
        return exc
    except Exception as exc:  # a bug (in a parser, say) fails this feed, not the whole poll
        log.exception("polling %s failed unexpectedly", location)
        return FeedError(location, f"unexpected error ({type(exc).__name__})")


# Names or ids per IN (...) list: well under SQLite's and PostgreSQL's bound-parameter limits.
_IN_CHUNK = 500


def _chunks(items: list, size: int = _IN_CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _feed_rows(factory, feeds: list[FeedSettings], locations: list[str]) -> list[_Row]:
    """Every feed's ledger row and conditional-GET validators, in one transaction (one query
    when the rows exist; missing rows are created first)."""
    url_of = {f.name: loc for f, loc in zip(feeds, locations, strict=True)}
    names = list(url_of)
    columns = (Feed.id, Feed.name, Feed.url, Feed.etag, Feed.last_modified, Feed.unparsed, Feed.last_error)
    with transaction(factory) as s:
        found = {r.name: r for chunk in _chunks(names) for r in s.execute(select(*columns)
                                                                          .where(Feed.name.in_(chunk)))}
        if missing := [n for n in names if n not in found]:
            for chunk in _chunks(missing):  # an overlapping poll may create them too: ignored
                insert_ignore_many(s, Feed, [{"name": n, "url": url_of[n], "polls": 0} for n in chunk],
                                   ["name"], returning=Feed.id)
                found.update({r.name: r for r in s.execute(select(*columns).where(Feed.name.in_(chunk)))})
        rows = {}
        for name in names:
            r = found[name]
            if r.url != url_of[name]:  # the feed moved in settings: its validators no longer apply
                s.execute(update(Feed).where(Feed.id == r.id).values(url=url_of[name], etag=None,
                                                                     last_modified=None, unparsed=None))
                rows[name] = _Row(r.id, None, None)
            elif r.unparsed and r.unparsed != UNPARSED_BY:  # judged by another parser: read it again
                rows[name] = _Row(r.id, None, None)
            else:
                rows[name] = _Row(r.id, r.etag, r.last_modified, bool(r.unparsed), r.last_error)
    return [rows[f.name] for f in feeds]


def _record_polled(factory, unchanged: dict[int, float], failed: dict[int, dict], now: datetime) -> None:
    """Every 304 in one executemany (with how long it took), every error in others; a failed
    fetch forgets nothing (only when it was tried and why it failed) but the validators of a body
    it could not read, kept with it or given up for a newer error. engine/quiet.py records its
    304s with the same statements (tests/test_quiet.py compares the rows)."""
    if not unchanged and not failed:
        return
    with transaction(factory) as s:
        if unchanged:
            s.execute(update(Feed), [{"id": feed_id, "last_polled_at": now, "last_ok_at": now, "last_error": None,
                                      "failing": 0, "last_fetch_seconds": seconds}
                                     for feed_id, seconds in unchanged.items()])
        by_columns: dict[tuple, list[dict]] = {}  # executemany wants one set of columns per statement
        for feed_id, values in failed.items():
            by_columns.setdefault(tuple(sorted(values)), []).append({"id": feed_id, "last_polled_at": now, **values})
        for batch in by_columns.values():
            s.execute(update(Feed), batch)
        if failed:
            for chunk in _chunks(list(failed)):  # failed polls in a row, for alerts
                s.execute(update(Feed).where(Feed.id.in_(chunk)).values(failing=Feed.failing + 1))


def _record_changed(factory, feed_id: int, feed_cfg: FeedSettings, outcome: _Fetched,
                    now: datetime) -> PollResult:
    fetched, parsed = outcome.fetched, outcome.parsed
    with transaction(factory) as s:
        result = _record_in(s, feed_id, feed_cfg, parsed.posts, now)
        result.warnings = parsed.warnings
        for warning in parsed.warnings:  # the run summary counts them; -v (and worker logs) say what
            log.info("feed %s: %s", feed_cfg.name, warning)
        s.execute(update(Feed).where(Feed.id == feed_id).values(
            etag=fetched.etag, last_modified=fetched.last_modified, unparsed=None, final_url=fetched.final_url,
            title=parsed.title, polls=Feed.polls + 1, last_polled_at=now, last_ok_at=now, last_error=None,
            failing=0, last_fetch_seconds=outcome.seconds))
    return result


def _record_in(s: Session, feed_id: int, feed_cfg: FeedSettings, posts: list[PostData],
               now: datetime) -> PollResult:
    result = PollResult(feed_cfg.name, "ok")
    first_poll = s.scalar(select(Feed.polls).where(Feed.id == feed_id)) == 0 and not s.scalar(
        select(Post.id).where(Post.feed_id == feed_id).limit(1))
    known = {p.identity: p for p in s.scalars(select(Post).where(Post.feed_id == feed_id))}
    moves = MoveDetector(known.values())
    fresh: list[PostData] = []
    for post in posts:
        if (old := known.get(post.identity)) is not None:
            result.edited += _update_if_edited(old, post, now)
        else:
            fresh.append(post)
    plans = _plans_for(fresh, moves, first_poll, feed_cfg)
    rows: dict[str, dict] = {}  # the first of posts sharing an identity wins, as row-by-row inserts did
    for post, (plan, duplicate_of) in zip(fresh, plans, strict=True):
        rows.setdefault(post.identity, _post_row(feed_id, post, plan, duplicate_of, now))
    if rows:
        s.flush()  # edits first, then one INSERT for every new post
        # An overlapping poll may have recorded some first: those are theirs, not counted here.
        for identity in insert_ignore_many(s, Post, list(rows.values()), ["feed_id", "identity"],
                                           returning=Post.identity):
            plan = rows[identity]["plan"]
            result.new += plan == "send"
            result.held += plan == "hold"
            result.recorded += plan == "ignore"
    return result


def _plans_for(fresh: list[PostData], moves: MoveDetector, first_poll: bool,
               feed_cfg: FeedSettings) -> list[tuple[str, int | None]]:
    if first_poll:
        newest = sorted(range(len(fresh)), key=lambda i: _sort_key(fresh[i]), reverse=True)
        chosen = set(newest[: feed_cfg.backfill])
        return [("send" if i in chosen else "ignore", None) for i in range(len(fresh))]
    plans: list[tuple[str, int | None]] = []
    for post in fresh:
        moved_from = moves.match(post)
        plans.append(("ignore", moved_from) if moved_from else ("send", None))
    if sum(plan == "send" for plan, _ in plans) > feed_cfg.flood_threshold:
        plans = [("hold", None) if plan == "send" else (plan, dup) for plan, dup in plans]
    return plans


class MoveDetector:
    """Recognizes a known post under a new identity: the site moved (http->https, "www.",
    tracking parameters: the normalized URL matches) or its permalinks changed (the same
    non-empty title, published within two days of the known one, or both undated)."""

    def __init__(self, known):
        self.by_url: dict[str, int] = {}
        self.by_title: dict[str, list[tuple[int, datetime | None]]] = {}
        for row in known:
            url, title = split_fingerprint(row.fingerprint)
            self.by_url.setdefault(url, row.id)
            if title:
                self.by_title.setdefault(title, []).append((row.id, row.published_at))

    def match(self, post: PostData) -> int | None:
        url, title = split_fingerprint(post.fingerprint)
        if url in self.by_url:
            return self.by_url[url]
        for post_id, published in self.by_title.get(title, []) if title else []:
            if published is None and post.published is None:
                return post_id
            if published and post.published and abs(published - post.published) <= timedelta(days=2):
                return post_id
        return None


def _sort_key(post: PostData) -> tuple:
    # Undated posts keep feed order (feeds list newest first), so they sort as oldest.
    return (post.published is not None, post.published or 0)


def _update_if_edited(row: Post, post: PostData, now: datetime) -> int:
    if row.content_hash == post.content_hash:
        return 0
    row.data, row.title, row.content_hash, row.edited_at = post.to_dict(), post.title, post.content_hash, now
    return 1


def _post_row(feed_id: int, post: PostData, plan: str, duplicate_of: int | None, now: datetime) -> dict:
    return {"feed_id": feed_id, "identity": post.identity, "fingerprint": post.fingerprint, "url": post.url,
            "title": post.title, "content_hash": post.content_hash, "data": post.to_dict(), "plan": plan,
            "duplicate_of": duplicate_of, "published_at": post.published, "first_seen_at": now,
            # Recorded without sending: planned by the very INSERT that records it (nothing to render).
            "planned_at": now if plan == "ignore" else None}

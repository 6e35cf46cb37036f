"""Polling a feed: fetch it, parse it, and record its posts in the ledger.

The rules (DESIGN.md, "Feeds"): the first poll records what is there without sending it
(except the newest ``backfill`` posts); an http->https or permalink move is recognized by the
post's fingerprint and not resent; an edited post (same identity, new content) is updated,
not resent; a poll that suddenly finds more than ``flood_threshold`` new posts holds them for a
human; a failed fetch or a broken document records the error and forgets nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syndicate.feeds import FeedError, fetch, parse, split_fingerprint
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Feed, Post
from syndicate.ledger.upsert import insert_ignore
from syndicate.model import PostData
from syndicate.settings import Feed as FeedSettings
from syndicate.settings import Settings


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
    feed_id, etag, last_modified = _feed_row(factory, feed_cfg, settings)
    location = settings.feed_location(feed_cfg)
    try:
        fetched = fetch(location, etag=etag, last_modified=last_modified,
                        timeout=settings.fetch.timeout.total_seconds(),
                        max_bytes=settings.fetch.max_bytes, user_agent=settings.fetch.user_agent)
        if fetched.status == 304:
            _mark_polled(factory, feed_id, now, error=None, unchanged=True)
            return PollResult(feed_cfg.name, "unchanged")
        parsed = parse(fetched.body, url=fetched.final_url or location, content_type=fetched.content_type)
    except FeedError as exc:
        _mark_polled(factory, feed_id, now, error=str(exc))
        return PollResult(feed_cfg.name, "error", error=str(exc))
    result = _record_posts(factory, feed_id, feed_cfg, parsed.posts, now)
    result.warnings = parsed.warnings
    with transaction(factory) as s:
        feed = s.get(Feed, feed_id)
        feed.etag, feed.last_modified = fetched.etag, fetched.last_modified
        feed.final_url, feed.title = fetched.final_url, parsed.title
        feed.polls += 1
        feed.last_polled_at = feed.last_ok_at = now
        feed.last_error = None
    return result


def _feed_row(factory, feed_cfg: FeedSettings, settings: Settings) -> tuple[int, str | None, str | None]:
    url = settings.feed_location(feed_cfg)
    with transaction(factory) as s:
        insert_ignore(s, Feed, {"name": feed_cfg.name, "url": url, "polls": 0}, ["name"])
        feed = s.scalar(select(Feed).where(Feed.name == feed_cfg.name))
        if feed.url != url:  # the feed moved in settings: conditional-GET validators no longer apply
            feed.url, feed.etag, feed.last_modified = url, None, None
        return feed.id, feed.etag, feed.last_modified


def _mark_polled(factory, feed_id: int, now: datetime, error: str | None, unchanged: bool = False) -> None:
    with transaction(factory) as s:
        feed = s.get(Feed, feed_id)
        feed.last_polled_at = now
        feed.last_error = error
        if unchanged:
            feed.last_ok_at = now


def _record_posts(factory, feed_id: int, feed_cfg: FeedSettings, posts: list[PostData],
                  now: datetime) -> PollResult:
    result = PollResult(feed_cfg.name, "ok")
    with transaction(factory) as s:
        first_poll = s.get(Feed, feed_id).polls == 0 and not s.scalar(
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
        for post, (plan, duplicate_of) in zip(fresh, plans, strict=True):
            inserted = insert_ignore(s, Post, _post_row(feed_id, post, plan, duplicate_of, now),
                                     ["feed_id", "identity"])
            if inserted:  # an overlapping poll may have recorded it first: then it is theirs
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
            "duplicate_of": duplicate_of, "published_at": post.published, "first_seen_at": now}

"""Latency: a post appears in the feed -> the X API fake records the post, with two workers
and beat running (dispatcher tick 1 s, feed poll every 1 s), PostgreSQL and a private Redis.

The feed is served by tests/feedserver.py (ETag/304) in this process; the X fake runs as its
own process (``python -m tests.fakes x``) and stamps each request as it arrives. Each post is
added at a random phase of the schedule (after a random 0-1 s pause), one at a time.

The limit is the schedule itself: a new post waits for the next poll (at most one interval),
then the planned delivery for the next dispatcher tick (at most one tick), so with nothing
else in the way the latency stays under interval + tick (2 s).
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from bench.cluster import RedisServer, start_beat, start_workers, wait_ready, write_config
from bench.common import REPO, WORK, Child, Context, FreshDatabase, Row, median, p95, wait_for

INTERVAL, TICK = 1.0, 1.0
PER_POST_TIMEOUT = 30.0


def run(ctx: Context) -> None:
    posts = 15 if ctx.quick else 50
    root = WORK / "latency"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    from tests.feedserver import FeedServer

    record = root / "x-requests.jsonl"
    fake = Child([sys.executable, "-m", "tests.fakes", "x", "--port", "0", "--record", str(record)],
                 root / "x-fake.log", stdout_pipe=True, cwd=REPO)
    redis = RedisServer(root).start()
    feed = _Feed()
    procs = []
    try:
        fake.readline(30)  # base URL
        fake_info = json.loads(fake.readline(30))
        with FeedServer() as server, FreshDatabase("latency") as store_url:
            server.route("/feed.xml", body=feed.xml(), etag=feed.etag(),
                         content_type="application/rss+xml; charset=utf-8")
            options = {**fake_info["options"], "rate_limit": "1000/1s"}
            opts = ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
            config = write_config(
                root / "settings.toml", store_url=store_url, broker_url=redis.url, outbox=root / "outbox",
                run={"tick": f"{TICK:g}s", "interval": f"{INTERVAL:g}s", "claim_ttl": "1m"},
                feeds=f'[[feeds]]\nname = "wellness"\nurl = "{server.url("/feed.xml")}"\n',
                channels=f'[channels.x]\nkind = "x"\nprovider = "x"\noptions = {{ {opts} }}\n')
            env = fake_info["env"]
            procs = start_workers(config, root, 2, env=env)
            wait_ready(procs)
            procs.append(start_beat(config, root, env=env))
            _wait_first_poll(store_url)
            latencies, missed, appeared_at = [], 0, {}
            for i in range(posts):
                time.sleep(random.uniform(0, INTERVAL))
                marker = feed.add(i)
                server.route("/feed.xml", body=feed.xml(), etag=feed.etag(),
                             content_type="application/rss+xml; charset=utf-8")
                appeared = appeared_at[marker] = time.time()
                try:
                    arrived = wait_for(lambda m=marker: _arrival(record, m), PER_POST_TIMEOUT, f"post {i}",
                                       interval=0.02)
                    latencies.append(arrived - appeared)
                except TimeoutError:
                    missed += 1
            phases = _phases(store_url, appeared_at)
            ctx.log(f"    {len(latencies)} posts: median {median(latencies):.2f} s, p95 {p95(latencies):.2f} s, "
                    f"max {max(latencies):.2f} s; {missed} not seen within {PER_POST_TIMEOUT:.0f} s")
    finally:
        for p in procs:
            p.stop()
        redis.stop()
        fake.stop()
    limit = INTERVAL + TICK
    scale = f"{len(latencies)} posts, 2 workers + beat, poll every {INTERVAL:g} s, tick {TICK:g} s"
    note = f"medians: {phases}" + (f"; {missed} posts not recorded within {PER_POST_TIMEOUT:.0f} s" if missed else "")
    ctx.add(Row("Latency", "new post -> X fake records it: median", median(latencies), limit, "s",
                "schedule bound: poll interval + dispatcher tick", scale=scale, note=note))
    ctx.add(Row("Latency", "new post -> X fake records it: 95th percentile", p95(latencies), limit, "s",
                "schedule bound: poll interval + dispatcher tick", scale=scale))


class _Feed:
    """A small RSS feed that grows one post at a time (newest first)."""

    def __init__(self):
        self.items: list[str] = []
        self.version = 0
        self.add(-1)

    def add(self, n: int) -> str:
        marker = f"bench-{n + 1}-{uuid.uuid4().hex[:8]}"
        when = format_datetime(datetime.now(UTC) - timedelta(seconds=1), usegmt=True)
        title = "Welcome to the Wellness Blog" if n < 0 else f"Gentle habits for better sleep, part {n + 1}"
        link = f"https://harborwellness.example/blog/{marker}/"
        self.items.insert(0, f"<item><title>{title}</title><link>{link}</link>"
                             f"<guid isPermaLink=\"true\">{link}</guid><pubDate>{when}</pubDate>"
                             f"<description>Small steps that help you rest, from our counselors.</description>"
                             f"</item>")
        self.version += 1
        return marker

    def etag(self) -> str:
        return f'"v{self.version}"'

    def xml(self) -> bytes:
        return ("<?xml version=\"1.0\" encoding=\"utf-8\"?><rss version=\"2.0\"><channel>"
                "<title>Wellness Blog</title><link>https://harborwellness.example/blog/</link>"
                "<description>Harbor Wellness Counseling</description>" + "".join(self.items)
                + "</channel></rss>").encode()


def _wait_first_poll(store_url: str) -> None:
    from sqlalchemy import select

    from syndicate.ledger.db import open_ledger, transaction
    from syndicate.ledger.models import Feed

    factory = open_ledger(store_url)

    def polled() -> bool:
        with transaction(factory) as s:
            return bool(s.scalar(select(Feed.polls).where(Feed.name == "wellness")))

    wait_for(polled, 60, "the first poll of the feed", interval=0.2)


def _phases(store_url: str, appeared_at: dict[str, float]) -> str:
    """Where the time went, from the ledger: feed change -> poll saw it -> delivery claimed -> sent."""
    from sqlalchemy import select

    from syndicate.ledger.db import open_ledger, transaction
    from syndicate.ledger.models import Delivery, Event, Post

    to_poll, to_claim, to_sent = [], [], []
    with transaction(open_ledger(store_url)) as s:
        rows = s.execute(select(Post.url, Post.first_seen_at, Delivery.id, Delivery.sent_at)
                         .join(Delivery, Delivery.post_id == Post.id)).all()
        claimed = dict(s.execute(select(Event.delivery_id, Event.at).where(Event.to_state == "claimed")).all())
    for url, seen, delivery_id, sent in rows:
        marker = next((m for m in appeared_at if m in url), None)
        if marker is None or sent is None or delivery_id not in claimed:
            continue
        to_poll.append(seen.timestamp() - appeared_at[marker])
        to_claim.append((claimed[delivery_id] - seen).total_seconds())
        to_sent.append((sent - claimed[delivery_id]).total_seconds())
    if not to_poll:
        return "no breakdown"
    return (f"change -> poll {median(to_poll):.2f} s, poll -> claimed {median(to_claim):.2f} s, "
            f"claimed -> sent {median(to_sent):.2f} s (ledger timestamps)")


def _arrival(record: Path, marker: str) -> float | None:
    if not record.exists():
        return None
    for line in record.read_text(errors="replace").splitlines():
        if marker in line:
            entry = json.loads(line)
            if entry.get("method") == "POST" and entry.get("path", "").endswith("/2/tweets"):
                return entry["time"]
    return None

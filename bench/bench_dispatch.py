"""Dispatching: N due deliveries in PostgreSQL, two Celery worker processes and beat on a
private Redis, the outbox provider writing to a temporary folder.

Ours: beat ticks ``syndicate.dispatch`` (reap, plan, claim ``batch_size`` due rows, publish
one ``syndicate.deliver`` each); the two workers run the dispatch ticks and the deliveries.
Deliveries/s is counted between the first and the last ``sent_at``.

The limit: the same two worker processes' worth of Celery on the same Redis with the same
task settings running a no-op task shaped like ``deliver`` (bench/celery_noop.py), N of them
published from one process: what Celery + Redis alone allow on this machine.

Worker memory: resident set of both workers (main process and pool child each), idle after
start-up and again after the last delivery.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from datetime import timedelta

from bench.cluster import RedisServer, rss, start_beat, start_workers, wait_ready, write_config
from bench.common import REPO, WORK, Child, Context, FreshDatabase, Row, wait_for

WORKERS = 2
TICK = "1s"
BATCH = 500  # rows claimed per dispatcher tick (default 50 per 15 s tick: see RESULTS.md)
CLAIM_TTL = "30m"  # no claim may expire while it waits in the queue behind a long backlog


def run(ctx: Context) -> None:
    count = max(1000, int(100_000 * ctx.scale))
    root = WORK / "dispatch"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    redis = RedisServer(root).start()
    try:
        limit_rate, limit_rss = _celery_limit(ctx, redis, root, count)
        with FreshDatabase("dispatch") as store_url:
            ours = _ours(ctx, redis, root, store_url, count)
    finally:
        redis.stop()
    rate, before, after, took, deferred, inproc = ours
    scale = f"{count:,} deliveries, {WORKERS} workers x 1 process, tick {TICK}, batch {BATCH}"
    ctx.add(Row("Dispatching", "deliveries/s: dispatcher + deliver + outbox files (PostgreSQL ledger)", rate,
                limit_rate, "/s", "no-op Celery task, same workers and settings", better="higher", scale=scale,
                note=f"{count:,} sent in {took:.0f} s (first to last sent_at){deferred}; the no-op ceiling: "
                     f"{count:,} tasks published from one process (as the dispatcher does) and consumed on the "
                     f"same Redis; the ledger path alone, claim_due + deliver() in one process without a "
                     f"broker: {inproc:.0f}/s"))
    ctx.add(Row("Dispatching", "worker memory (RSS, 2 workers) after the run", after, before, "MiB",
                "the same workers idle before", scale=scale,
                note=f"no-op Celery workers: {limit_rss[0]:.0f} MiB before, {limit_rss[1]:.0f} MiB after"))
    ctx.add(Row("Dispatching", "worker memory (RSS, 2 workers) idle after start-up", before, limit_rss[0], "MiB",
                "no-op Celery workers idle (same settings)", scale=f"{WORKERS} workers x 1 process",
                note="what importing the library adds to each worker process (SQLAlchemy, pydantic, feedparser, "
                     "MRML, nh3, requests...)"))


def _celery_limit(ctx: Context, redis: RedisServer, root, count: int) -> tuple[float, tuple[float, float]]:
    import redis as redis_lib

    broker = redis.url.rsplit("/", 1)[0] + "/1"
    env = {"BENCH_BROKER": broker}
    workers = [Child([sys.executable, "-m", "celery", "-A", "bench.celery_noop", "worker", "-c", "1",
                      "-n", f"noop{i + 1}@%h", "--loglevel", "INFO"], root / f"noop{i + 1}.log", env=env,
                     cwd=REPO) for i in range(WORKERS)]
    client = redis_lib.Redis.from_url(broker)
    try:
        wait_for(lambda: all(" ready." in (root / f"noop{i + 1}.log").read_text(errors="replace")
                             for i in range(WORKERS)), 60, "no-op workers to be ready", interval=0.2)
        before = sum(_tree(w) for w in workers)
        os.environ["BENCH_BROKER"] = broker
        from bench.celery_noop import noop

        start = time.perf_counter()
        for i in range(count):
            noop.apply_async((i, uuid.uuid4().hex), retry=False)
        published = time.perf_counter() - start
        wait_for(lambda: int(client.get("bench:noop:done") or 0) >= count, max(120, count / 50),
                 "no-op tasks to finish", interval=0.2)
        took = time.perf_counter() - start
        after = sum(_tree(w) for w in workers)
        ctx.log(f"    no-op Celery limit: {count:,} tasks in {took:.1f} s = {count / took:,.0f}/s "
                f"(publishing took {published:.1f} s); RSS {before:.0f} -> {after:.0f} MiB")
        return count / took, (before, after)
    finally:
        for w in workers:
            w.stop()
        from bench.celery_noop import app

        app.close()


def _in_process(factory, config, now, count: int) -> float:
    """claim_due + deliver() for COUNT deliveries of their own channel, in this process (the
    embedded runner's path): what the ledger and the outbox cost without Celery and Redis."""
    from sqlalchemy import insert

    from syndicate import settings as settings_mod
    from syndicate.engine.deliver import deliver
    from syndicate.engine.dispatch import claim_due
    from syndicate.ledger.db import transaction
    from syndicate.ledger.models import Delivery

    settings = settings_mod.load(config)
    with transaction(factory) as s:
        s.execute(insert(Delivery), [{"key": uuid.uuid4().hex, "subject": f"inproc:{n}", "channel": "y", "kind": "x",
                                      "provider": "outbox", "state": "planned", "due_at": now - timedelta(seconds=2),
                                      "payload": {"text": f"In-process {n}"}, "created_at": now, "updated_at": now}
                                     for n in range(count)])
    start = time.perf_counter()
    providers: dict = {}
    done = 0
    # Due a second before the workers' rows, so these are claimed first and no other is taken.
    while done < count and (claims := claim_due(factory, now - timedelta(seconds=2), limit=min(100, count - done),
                                                ttl=timedelta(minutes=30), actor="bench")):
        for claim in claims:
            deliver(factory, settings, claim.delivery_id, claim.token, actor="bench", provider_cache=providers,
                    channel=claim.channel)
            done += 1
    return done / (time.perf_counter() - start)


def _tree(child: Child) -> float:
    from bench.common import tree_rss_mib

    return tree_rss_mib(child.proc.pid)


def _ours(ctx: Context, redis: RedisServer, root, store_url: str, count: int):
    from sqlalchemy import func, insert, select

    from syndicate.ledger.db import open_ledger, transaction
    from syndicate.ledger.models import Delivery, utcnow

    outbox = root / "outbox"
    config = write_config(root / "settings.toml", store_url=store_url, broker_url=redis.url, outbox=outbox,
                          run={"tick": TICK, "batch_size": BATCH, "claim_ttl": CLAIM_TTL},
                          channels='[channels.x]\nkind = "x"\nprovider = "outbox"\n\n'
                                   '[channels.y]\nkind = "x"\nprovider = "outbox"\n')
    factory = open_ledger(store_url)
    now = utcnow()
    t0 = time.perf_counter()
    with transaction(factory) as s:
        for start in range(0, count, 5000):
            rows = [{"key": uuid.uuid4().hex, "subject": f"bench:{n}", "channel": "x", "kind": "x",
                     "provider": "outbox", "state": "planned", "due_at": now - timedelta(seconds=1),
                     "payload": {"text": f"Post {n}: a new article on the Wellness Blog https://harborwellness"
                                         f".example/blog/post-{n}"},
                     "post_url": f"https://harborwellness.example/blog/post-{n}", "created_at": now,
                     "updated_at": now} for n in range(start, min(start + 5000, count))]
            s.execute(insert(Delivery), rows)
    ctx.log(f"    seeded {count:,} due deliveries in {time.perf_counter() - t0:.1f} s")
    inproc = _in_process(factory, config, now, 300 if ctx.quick else 1000)
    ctx.log(f"    the ledger path in one process (claim_due + deliver, no broker): {inproc:.0f}/s")
    workers = start_workers(config, root, WORKERS)
    beat = None
    try:
        wait_ready(workers)
        before = rss(workers)
        beat = start_beat(config, root)
        final = ("sent", "failed", "unknown", "skipped", "cancelled")

        def done() -> bool:
            with transaction(factory) as s:
                return s.scalar(select(func.count()).where(Delivery.channel == "x",
                                                           Delivery.state.in_(final))) >= count

        deadline = max(300, count / 25)
        try:
            wait_for(done, deadline, "every delivery to be sent", interval=2.0)
        except TimeoutError:
            ctx.log(f"    [yellow]not all deliveries finished within {deadline:.0f} s; rate from those sent")
        after = rss(workers)
        with transaction(factory) as s:
            first, last, sent = s.execute(select(func.min(Delivery.sent_at), func.max(Delivery.sent_at),
                                                 func.count()).where(Delivery.channel == "x",
                                                                     Delivery.state == "sent")).one()
            states = dict(s.execute(select(Delivery.state, func.count()).where(Delivery.channel == "x")
                                    .group_by(Delivery.state)).all())
        took = max((last - first).total_seconds(), 1e-3)
        files = sum(1 for _ in (outbox / "x").glob("*.json"))
        others = {k: v for k, v in states.items() if k != "sent"}
        ctx.log(f"    ours: {sent:,} sent in {took:.1f} s = {sent / took:,.0f}/s; states {states}; "
                f"{files:,} outbox files; RSS {before:.0f} -> {after:.0f} MiB")
        note = f"; also {others}" if others else ""
        if files != sent:
            note += f"; {files:,} outbox files for {sent:,} sent"
        return sent / took, before, after, took, note, inproc
    finally:
        if beat is not None:
            beat.stop()
        for w in workers:
            w.stop()

"""A full ledger: 1,000,000 deliveries of 100,000 posts in PostgreSQL, and what a person or the
dispatcher asks of it.

The ledger is filled server-side (INSERT ... SELECT generate_series): 100,000 posts over 50
feeds, ten channels each, so 1,000,000 deliveries, nearly all sent over the past year, with a
realistic tail: 20,000 planned for the coming weeks, 2,000 due now, 3,000 held (a flood), 500
failed, 100 unknown. Each figure is the median of 5 calls of the library function the command or
page runs (the process start-up is measured elsewhere), against the issue's 200 ms. For each,
the statements it ran are timed and the two slowest are shown with EXPLAIN (ANALYZE, BUFFERS) in
bench/.work/scale/explain.md (copied into RESULTS.md by hand): no full scans.

    python bench/run.py scale            # the issue's size
    python bench/run.py scale --quick    # a tenth of it
"""

from __future__ import annotations

import shutil
import statistics
import time
from datetime import timedelta

from bench.common import WORK, Context, FreshDatabase, Row

LIMIT_S = 0.2
CHANNELS = 10


def run(ctx: Context) -> None:
    posts = 10_000 if ctx.quick else 100_000
    root = WORK / "scale"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    with FreshDatabase("scale") as url:
        settings = _settings(root, url)
        from syndicate.ledger.db import open_ledger

        factory = open_ledger(url)
        t0 = time.perf_counter()
        _fill(factory, posts)
        _vacuum(factory)
        ctx.log(f"    filled {posts:,} posts and {posts * CHANNELS:,} deliveries in {time.perf_counter() - t0:.0f} s")
        scale = f"{posts * CHANNELS:,} deliveries, {posts:,} posts (PostgreSQL); median of 5"
        explains = []
        for name, call in _operations(factory, settings):
            took, slowest = _measure(factory, call)
            ctx.add(Row("Scale", name, took, LIMIT_S, "s", "the issue's bound (200 ms)", goal=1.0, scale=scale,
                        note=f"slowest statement {slowest[0][1] * 1000:.0f} ms" if slowest else ""))
            explains += [(name, sql, _explain(factory, sql, params)) for sql, _took, params in slowest]
    text = "\n\n".join(f"#### {name}\n\n```sql\n{sql}\n```\n\n```\n{plan}\n```" for name, sql, plan in explains)
    (root / "explain.md").write_text(text + "\n")
    ctx.log(f"    EXPLAIN of each figure's slowest statement: {root / 'explain.md'}")


def _settings(root, url):
    from syndicate import settings as settings_mod

    channels = {f"c{i}": {"kind": "x", "provider": "outbox"} for i in range(CHANNELS)}
    return settings_mod.from_dict({"site": {"name": "Bench", "url": "https://bench.example"}, "store": {"url": url},
                                   "feeds": [], "channels": channels}, base_dir=root)


def _fill(factory, posts: int) -> None:
    from sqlalchemy import text

    from syndicate.ledger.db import transaction

    with transaction(factory) as s:
        s.execute(text("INSERT INTO feeds (name, url, polls) SELECT 'feed' || g, 'https://blog' || g || '.example/feed',"
                       " 10 FROM generate_series(1, 50) g"))
        s.execute(text("""
            INSERT INTO posts (feed_id, identity, fingerprint, url, title, content_hash, data, plan, published_at,
                               first_seen_at, planned_at)
            SELECT 1 + g % 50, 'https://blog.example/p/' || g, 'blog.example/p/' || g || '|post ' || g,
                   'https://blog.example/p/' || g, 'Post number ' || g, md5(g::text), '{}', 'send',
                   now() - (100000 - g) * interval '5 minutes', now() - (100000 - g) * interval '5 minutes',
                   now() - (100000 - g) * interval '5 minutes'
            FROM generate_series(1, :posts) g"""), {"posts": posts})
        # Ten deliveries a post; the newest posts' deliveries are the live tail (see the docstring).
        s.execute(text("""
            INSERT INTO deliveries (key, subject, post_id, channel, kind, provider, state, due_at, payload, post_url,
                                    hold_reason, attempts, provider_ref, last_error, error_class, created_at,
                                    updated_at, sent_at)
            SELECT md5(p.id || '-' || c), 'post:' || p.id, p.id, 'c' || c, 'x', 'outbox', st.state,
                   CASE WHEN st.state = 'planned' AND n <= 2000 THEN now() - interval '1 minute'
                        WHEN st.state = 'planned' THEN now() + (n % 30000) * interval '1 minute'
                        ELSE p.first_seen_at END,
                   '{"text": "a post"}', p.url,
                   CASE WHEN st.state = 'held' THEN 'flood: approve to send' END,
                   CASE WHEN st.state IN ('sent', 'failed', 'unknown') THEN 1 ELSE 0 END,
                   CASE WHEN st.state = 'sent' THEN 'outbox/c' || c || '/' || p.id || '.json' END,
                   CASE WHEN st.state IN ('failed', 'unknown') THEN 'permanent: refused' END,
                   CASE WHEN st.state IN ('failed', 'unknown') THEN 'permanent' END,
                   p.first_seen_at, p.first_seen_at, CASE WHEN st.state = 'sent' THEN p.first_seen_at END
            FROM posts p CROSS JOIN generate_series(0, 9) c
            CROSS JOIN LATERAL (SELECT (:total - ((p.id - 1) * 10 + c)) AS n) k
            CROSS JOIN LATERAL (SELECT CASE WHEN n <= 22000 THEN 'planned' WHEN n <= 25000 THEN 'held'
                                            WHEN n <= 25500 THEN 'failed' WHEN n <= 25600 THEN 'unknown'
                                            ELSE 'sent' END AS state) st"""), {"total": posts * CHANNELS})



def _vacuum(factory) -> None:
    """What autovacuum does to a ledger that has run for a year: statistics, and the visibility
    map that lets an index answer a count without reading the table."""
    from sqlalchemy import text

    with factory.kw["bind"].connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def _operations(factory, settings):
    from syndicate.cli.report import StatusFilter, status_counts, status_rows
    from syndicate.engine.dispatch import claim_due
    from syndicate.engine.planner import plan_pending
    from syndicate.engine.upcoming import pending_count, upcoming
    from syndicate.ledger.db import transaction
    from syndicate.ledger.models import utcnow
    from syndicate.web.desk.previews import queue_page, tab_counts

    def claim():
        claim_due(factory, utcnow(), limit=500, ttl=timedelta(minutes=30), actor="bench")

    def desk(tab):
        def page():
            with transaction(factory) as s:
                queue_page(s, settings, tab)
                tab_counts(s)
        return page

    def status(limit, only=None, counts=False):
        def call():  # --json prints the rows; the table also counts every match by state
            status_rows(settings, limit, only)
            if counts:
                status_counts(settings, only)
        return call

    def schedule():  # as `syndicate schedule` does: the first 200, and how many more
        upcoming(settings, limit=200)
        pending_count(settings)

    return [
        ("dispatch claim: claim_due(limit=500)", claim),
        ("planning tick with nothing to plan: plan_pending", lambda: plan_pending(factory, settings, utcnow())),
        ("`syndicate status --json --limit 50`", status(50)),
        ("`syndicate status --json --limit 50 --state held`", status(50, StatusFilter(("held",)))),
        ("`syndicate status --json --limit 50 --channel c3`", status(50, StatusFilter((), "c3"))),
        ("`syndicate status` (table: 200 rows and the counts by state)", status(200, counts=True)),
        ("`syndicate schedule` (200 rows, and how many more)", schedule),
        ("desk queue page (Upcoming tab, 100 rows, tab counts)", desk("upcoming")),
        ("desk queue page (Sent tab)", desk("sent")),
    ]


def _measure(factory, call) -> tuple[float, list[tuple[str, float, object]]]:
    """The median of 5 calls, and the two slowest distinct statements seen (SQL, seconds, parameters)."""
    from sqlalchemy import event

    engine = factory.kw["bind"]
    statements: list[tuple[str, float, object]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_t0"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, time.perf_counter() - conn.info.pop("bench_t0"), parameters))

    times = []
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        for _ in range(5):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    queries = [st for st in statements if st[0].lstrip().upper().startswith(("SELECT", "UPDATE", "WITH", "INSERT"))]
    slowest: dict[str, tuple[str, float, object]] = {}
    for st in sorted(queries, key=lambda st: st[1], reverse=True):
        slowest.setdefault(st[0], st)
    return statistics.median(times), list(slowest.values())[:2]


def _explain(factory, sql: str, params) -> str:
    engine = factory.kw["bind"]
    with engine.connect() as conn:  # rolled back: an UPDATE explained is not kept
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plan = "\n".join(row[0] for row in cur.fetchall())
        raw.rollback()
    return plan

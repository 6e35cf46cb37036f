"""poll_feeds: many feeds at once, with a bound per host, batched ledger work, and the same
results as polling one feed after another (on both ledgers)."""

from __future__ import annotations

import socket
from datetime import timedelta

from feedserver import FeedServer, fixture
from sqlalchemy import event, select

from syndicate.engine.poll import poll_feed, poll_feeds
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Feed, Post
from tests.test_poll import T0, item, rss

feed_server = fixture()


def _settings(make_settings, store_url, urls: dict[str, str], **feed_options):
    return make_settings(store_url=store_url, feeds=[{"name": name, "url": url, **feed_options.get(name, {})}
                                                     for name, url in urls.items()])


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/feed.xml"


def test_at_most_per_host_requests_in_flight_to_each_host(make_settings):
    with FeedServer() as one, FeedServer(host="127.0.0.2") as two:
        urls = {}
        for server, tag in ((one, "a"), (two, "b")):
            for n in range(6):
                server.route(f"/{n}.xml", rss([item(n)]), delay=0.15)
                urls[f"{tag}{n}"] = server.url(f"/{n}.xml")
        settings = _settings(make_settings, None, urls)
        factory = open_ledger(settings.store_url)
        results = poll_feeds(factory, settings, settings.feeds, T0, workers=8, per_host=2)
    assert [r.feed for r in results] == list(urls)  # in the order of the feeds
    assert {r.status for r in results} == {"ok"}
    # The bound holds, and the pool does use it (both hosts at once, two each).
    assert (one.max_in_flight, two.max_in_flight) == (2, 2)


def test_the_pool_bounds_requests_in_flight_overall(make_settings, feed_server):
    for n in range(6):
        feed_server.route(f"/{n}.xml", rss([item(n)]), delay=0.1)
    settings = _settings(make_settings, None, {f"f{n}": feed_server.url(f"/{n}.xml") for n in range(6)})
    factory = open_ledger(settings.store_url)
    results = poll_feeds(factory, settings, settings.feeds, T0, workers=3, per_host=10)
    assert [r.status for r in results] == ["ok"] * 6
    assert feed_server.max_in_flight == 3


def _ledger_state(factory, prefix: str) -> dict:
    """What the ledger knows of the feeds named PREFIX*, without ids and names' prefix."""
    with transaction(factory) as s:
        feeds = {f.id: f for f in s.scalars(select(Feed).where(Feed.name.like(prefix + "%")))}
        posts = list(s.scalars(select(Post).where(Post.feed_id.in_(feeds))))
        identity = {p.id: p.identity for p in posts}
        return {
            "feeds": {f.name.removeprefix(prefix): (f.etag, f.last_modified, f.polls, f.last_error, f.title,
                                                    f.last_polled_at, f.last_ok_at) for f in feeds.values()},
            "posts": sorted((feeds[p.feed_id].name.removeprefix(prefix), p.identity, p.fingerprint, p.plan,
                             p.title, p.content_hash, p.edited_at, identity.get(p.duplicate_of))
                            for p in posts),
        }


def _comparable(results, prefix: str) -> list[tuple]:
    return [(r.feed.removeprefix(prefix), r.status, r.new, r.held, r.recorded, r.edited, r.error, r.warnings)
            for r in results]


def test_the_same_results_as_polling_one_feed_after_another(store_url, make_settings, feed_server, tmp_path):
    server = feed_server
    local = tmp_path / "local.xml"
    local.write_bytes(rss([item(1), item(2)]))
    routes = {"new": [item(1)], "edit": [item(1), item(2)], "move": [item(1), item(2)],
              "flood": [item(1)], "same": [item(1), item(2), item(3)], "flaky": [item(1)]}
    for name, items in routes.items():
        server.route(f"/{name}.xml", rss(items), etag=f'"{name}-1"')
    server.route("/backfill.xml", rss([item(n) for n in range(1, 6)]), last_modified="Mon, 23 Nov 2026 10:00:00 GMT")
    urls = {name: server.url(f"/{name}.xml") for name in [*routes, "backfill"]}
    urls |= {"local": str(local), "gone": server.url("/missing.xml"), "refused": _closed_port_url()}
    options = {"backfill": {"backfill": 2}, "flood": {"flood_threshold": 2}}
    settings = _settings(make_settings, store_url,
                         {f"{side}-{name}": url for side in ("seq", "con") for name, url in urls.items()},
                         **{f"{side}-{name}": o for side in ("seq", "con") for name, o in options.items()})
    factory = open_ledger(store_url)
    seq = [f for f in settings.feeds if f.name.startswith("seq-")]
    con = [f for f in settings.feeds if f.name.startswith("con-")]

    def both(now):
        sequential = [poll_feed(factory, settings, f, now) for f in seq]
        concurrent = poll_feeds(factory, settings, con, now, workers=4, per_host=2)
        assert _comparable(concurrent, "con-") == _comparable(sequential, "seq-")
        assert _ledger_state(factory, "con-") == _ledger_state(factory, "seq-")
        return {r.feed.removeprefix("con-"): r for r in concurrent}

    first = both(T0)
    assert first["backfill"].new == 2 and first["same"].recorded == 3 and first["gone"].status == "error"

    # A new post, an edit, an https + permalink move, a flood, a feed that breaks; one unchanged.
    server.route("/new.xml", rss([item(2), item(1)]), etag='"new-2"')
    server.route("/edit.xml", rss([item(1, text="Corrected"), item(2)]), etag='"edit-2"')
    moved = [item(n, guid=f"https://www.blog.example/?p={n}", link=f"https://www.blog.example/post-{n}/")
             for n in (1, 2)]
    server.route("/move.xml", rss(moved, base="https://www.blog.example"), etag='"move-2"')
    server.route("/flood.xml", rss([item(n) for n in range(1, 6)]), etag='"flood-2"')
    server.route("/flaky.xml", status=500, body=b"oops")
    second = both(T0 + timedelta(hours=1))
    assert (second["new"].new, second["edit"].edited, second["move"].recorded, second["flood"].held) == (1, 1, 2, 4)
    assert second["same"].status == "unchanged" and second["flaky"].status == "error"

    # The broken feed comes back as it was: nothing new, nothing forgotten (its validators kept).
    server.route("/flaky.xml", rss([item(1)]), etag='"flaky-1"')
    third = both(T0 + timedelta(hours=2))
    assert third["flaky"].status == "unchanged" and third["new"].status == "unchanged"


def test_a_failing_feed_among_many_affects_no_other(make_settings, feed_server, tmp_path):
    for n in range(5):
        feed_server.route(f"/{n}.xml", rss([item(n), item(n + 10)]), etag=f'"v{n}"')
    feed_server.route("/slow.xml", rss([item(99)]), delay=1.5)
    feed_server.route("/html.xml", b"<html><body>Service unavailable</body></html>", content_type="text/html")
    urls = {f"ok{n}": feed_server.url(f"/{n}.xml") for n in range(5)}
    urls |= {"refused": _closed_port_url(), "slow": feed_server.url("/slow.xml"),
             "html": feed_server.url("/html.xml"), "nofile": str(tmp_path / "nope.xml")}
    settings = make_settings(feeds=[{"name": n, "url": u} for n, u in urls.items()], fetch={"timeout": "1s"})
    factory = open_ledger(settings.store_url)
    results = {r.feed: r for r in poll_feeds(factory, settings, settings.feeds, T0, workers=4)}
    assert all(results[f"ok{n}"].status == "ok" and results[f"ok{n}"].recorded == 2 for n in range(5))
    assert {n: results[n].status for n in ("refused", "slow", "html", "nofile")} == dict.fromkeys(
        ("refused", "slow", "html", "nofile"), "error")
    with transaction(factory) as s:
        feeds = {f.name: f for f in s.scalars(select(Feed))}
        assert len(s.scalars(select(Post)).all()) == 10
    assert all(feeds[f"ok{n}"].last_error is None and feeds[f"ok{n}"].etag == f'"v{n}"' for n in range(5))
    assert all(feeds[n].last_error and feeds[n].last_polled_at and feeds[n].polls == 0
               for n in ("refused", "slow", "html", "nofile"))


def test_every_304_is_recorded_in_one_update(make_settings, feed_server):
    for n in range(12):
        feed_server.route(f"/{n}.xml", rss([item(n)]), etag=f'"v{n}"')
    settings = make_settings(feeds=[{"name": f"f{n:02d}", "url": feed_server.url(f"/{n}.xml")} for n in range(12)])
    factory = open_ledger(settings.store_url)
    poll_feeds(factory, settings, settings.feeds, T0)
    statements: list[str] = []
    engine = factory.kw["bind"]
    listener = lambda _conn, _cur, sql, *_rest: statements.append(" ".join(sql.split()).upper())  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        results = poll_feeds(factory, settings, settings.feeds, T0 + timedelta(hours=1), workers=4)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert [r.status for r in results] == ["unchanged"] * 12
    assert [r.feed for r in results] == [f.name for f in settings.feeds]
    assert sum(s.startswith("UPDATE FEEDS") for s in statements) == 1
    assert sum(s.startswith("SELECT") and "FROM FEEDS" in s for s in statements) == 1  # the validators
    assert not any(s.startswith("INSERT") for s in statements)
    with transaction(factory) as s:
        feeds = s.scalars(select(Feed)).all()
    assert {(f.last_ok_at, f.last_polled_at, f.polls, f.last_error) for f in feeds} == {
        (T0 + timedelta(hours=1), T0 + timedelta(hours=1), 1, None)}
    assert all(f.last_fetch_seconds is not None and 0 < f.last_fetch_seconds < 10 for f in feeds)  # /metrics
    assert all(r.get("if-none-match") for r in feed_server.requests[12:])


def test_an_unexpected_error_in_one_feed_fails_only_that_feed(make_settings, feed_server, monkeypatch):
    from syndicate.engine import poll as poll_mod

    for n in range(4):
        feed_server.route(f"/{n}.xml", rss([item(n)]))
    real_parse = poll_mod.parse

    def parse(body, **kw):
        if kw["url"].endswith("/2.xml"):
            raise RecursionError("a parser bug")
        return real_parse(body, **kw)

    monkeypatch.setattr(poll_mod, "parse", parse)
    settings = make_settings(feeds=[{"name": f"f{n}", "url": feed_server.url(f"/{n}.xml")} for n in range(4)])
    results = poll_feeds(open_ledger(settings.store_url), settings, settings.feeds, T0, workers=2)
    assert [r.status for r in results] == ["ok", "ok", "error", "ok"]
    assert "RecursionError" in results[2].error

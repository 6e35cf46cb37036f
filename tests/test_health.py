"""engine/health.py: each check against its [health] threshold, read from a real ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from syndicate.engine import health
from syndicate.engine.heartbeat import beat
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Feed

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def _delivery(s, key: str, state: str, due_at: datetime, lease_until: datetime | None = None) -> None:
    s.add(Delivery(key=key, subject=f"post:{key}", channel="x", kind="x", provider="outbox", state=state,
                   due_at=due_at, payload={}, lease_until=lease_until))


def test_each_check_fails_past_its_threshold_and_is_named(make_settings, store_url):
    settings = make_settings(store_url=store_url, feeds=[{"name": "blog", "url": "feed.xml"},
                                                         {"name": "new", "url": "new.xml"}],
                             health={"heartbeat_after": "1m", "due_after": "10m", "sending_after": "5m",
                                     "feed_after": "1h"})
    factory = open_ledger(settings.store_url)
    beat(factory, "runner", NOW - timedelta(seconds=30), NOW)
    with transaction(factory) as s:
        s.add(Feed(name="blog", url="feed.xml", polls=3, last_polled_at=NOW - timedelta(minutes=5),
                   last_ok_at=NOW - timedelta(minutes=5)))
        _delivery(s, "due-soon", "planned", NOW - timedelta(minutes=9))
        _delivery(s, "future", "planned", NOW + timedelta(hours=1))
        _delivery(s, "sending-ok", "sending", NOW, lease_until=NOW - timedelta(minutes=4))
    report = health.evaluate(settings, factory, NOW)
    assert report.ok and report.runner == "embedded", report.as_dict()
    assert [c.name for c in report.checks] == ["ledger", "pause", "broker", "runner", "due", "sending", "feed:blog", "feed:new"]
    assert report.as_dict()["checks"]["feed:new"]["detail"] == "not polled yet"

    with transaction(factory) as s:
        _delivery(s, "late", "planned", NOW - timedelta(minutes=11))
        _delivery(s, "stuck", "sending", NOW, lease_until=NOW - timedelta(minutes=6))
        s.execute(update(Feed).where(Feed.name == "blog").values(last_ok_at=NOW - timedelta(hours=2),
                                                                  last_error="HTTP 500 from the blog"))
        s.add(Feed(name="new", url="new.xml", polls=0, last_polled_at=NOW, last_error="not a feed"))
    report = health.evaluate(settings, factory, NOW + timedelta(seconds=31))  # the runner: 61 s silent
    assert [c.name for c in report.failing] == ["runner", "due", "sending", "feed:blog", "feed:new"]
    checks = report.as_dict()["checks"]
    assert "2 due deliveries" in checks["due"]["detail"] and checks["due"]["value"] > 600
    assert checks["sending"]["value"] == 1
    assert "HTTP 500 from the blog" in checks["feed:blog"]["detail"]
    assert checks["feed:new"]["detail"] == "never fetched successfully: not a feed"


def test_workers_mode_checks_beat_and_the_dispatcher_and_a_fresh_server_waits(make_settings, store_url):
    settings = make_settings(store_url=store_url, health={"runner": "workers", "heartbeat_after": "1m"},
                             broker={"url": "redis://127.0.0.1:1/0"})  # nothing listens there
    factory = open_ledger(settings.store_url)
    report = health.evaluate(settings, factory, NOW, started_at=NOW - timedelta(seconds=10))
    assert [c.name for c in report.failing] == ["broker"]  # beat and dispatcher: not yet, within the grace
    assert "127.0.0.1:1" in report.failing[0].detail and "redis://" not in report.failing[0].detail
    report = health.evaluate(settings, factory, NOW, started_at=NOW - timedelta(minutes=2))
    assert [c.name for c in report.failing] == ["broker", "beat", "dispatcher"]


def test_a_ledger_that_cannot_be_read_is_the_one_failing_check(make_settings, tmp_path):
    settings = make_settings()
    factory = open_ledger(settings.store_url)
    (tmp_path / "ledger.db").unlink()
    (tmp_path / "ledger.db").mkdir()  # no longer a database file
    from syndicate.ledger.db import close_ledger

    close_ledger(settings.store_url)
    report = health.evaluate(settings, factory, NOW)
    assert not report.ok and [c.name for c in report.checks] == ["ledger"]


def test_human_durations():
    assert [health.human(timedelta(seconds=s)) for s in (3, 130, 3600, 3900, 97200)] == \
        ["3s", "2m 10s", "1h", "1h 5m", "1d 3h"]


def test_a_pause_is_shown_and_due_deliveries_waiting_for_it_are_no_fault(make_settings, store_url):
    from syndicate.engine import pause

    settings = make_settings(store_url=store_url, health={"due_after": "10m"})
    factory = open_ledger(settings.store_url)
    beat(factory, "runner", NOW - timedelta(seconds=30), NOW)
    with transaction(factory) as s:
        _delivery(s, "long-due", "planned", NOW - timedelta(hours=2))
    assert [c.name for c in health.evaluate(settings, factory, NOW).failing] == ["due"]
    pause.pause(factory, "staff:dana", "bad news day", now=NOW - timedelta(hours=3))
    report = health.evaluate(settings, factory, NOW)
    checks = report.as_dict()["checks"]
    assert report.ok and "PAUSED" in checks["pause"]["detail"] and "bad news day" in checks["pause"]["detail"]
    assert checks["due"]["skipped"] and "syndicate resume" in checks["due"]["detail"]

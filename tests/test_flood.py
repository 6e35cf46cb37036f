"""Work at the size a flood makes: bulk actions (engine, CLI, desk), paged and filtered lists,
and the embedded runner sending approvals within a tick. The flood is written straight into
the ledger (thousands of held deliveries) so each test stays quick."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from syndicate.cli import main
from syndicate.engine.bulk import Selection, bulk_act
from syndicate.engine.dispatch import claim_one
from syndicate.engine import heartbeat
from syndicate.engine.runner import ledger, run_forever
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Event, Post, utcnow

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
CHANNELS = {"newsletter": {"kind": "email", "provider": "outbox", "to": ["reader@example.org"]},
            "x": {"kind": "x", "provider": "outbox"},
            "bluesky": {"kind": "bluesky", "provider": "outbox"}}


def flood(factory, posts: int, channels=("newsletter", "x", "bluesky"), state: str = "held",
          due: datetime = NOW, first: int = 0) -> list[int]:
    """POSTS posts, each with one delivery per channel in STATE; the posts' ids."""
    with transaction(factory) as s:
        feed_id = s.scalar(select(func.min(Post.feed_id)))
        if feed_id is None:
            from syndicate.ledger.models import Feed

            s.add(Feed(name="flood", url="http://flood.example/feed"))
            s.flush()
            feed_id = s.scalar(select(func.min(Feed.id)))
        rows = [{"feed_id": feed_id, "identity": f"flood-{i}", "fingerprint": f"fp-{i}",
                 "url": f"https://blog.example/{i}", "title": f"Flood post {i}", "data": {}, "plan": "hold",
                 "first_seen_at": NOW, "planned_at": NOW} for i in range(first, first + posts)]
        ids = list(s.scalars(insert(Post).returning(Post.id), rows))
        s.execute(insert(Delivery), [
            {"key": f"k-{pid}-{ch}", "subject": f"post:{pid}", "post_id": pid, "channel": ch,
             "kind": CHANNELS[ch]["kind"], "provider": "outbox", "state": state,
             "due_at": due + timedelta(seconds=n), "payload": {"text": f"post {pid}"},
             "hold_reason": "flood: many new posts at once" if state == "held" else None,
             "created_at": NOW, "updated_at": NOW}
            for n, pid in enumerate(ids) for ch in channels])
    return ids


@pytest.fixture
def settings(make_settings, store_url):
    return make_settings(store_url=store_url, channels=CHANNELS)


def states(factory, **where) -> dict[str, int]:
    query = select(Delivery.state, func.count()).group_by(Delivery.state)
    for key, value in where.items():
        query = query.where(getattr(Delivery, key) == value)
    with transaction(factory) as s:
        return dict(s.execute(query).all())


# ---------------------------------------------------------------- bulk actions: the engine


def test_bulk_approve_by_channel_one_event_per_row(settings):
    factory = ledger(settings)
    flood(factory, 200)
    result = bulk_act(factory, "approve", Selection(channel="x"), "cli:ana")
    assert len(result.changed) == 200 and result.busy == 0 and result.ineligible == 0
    assert states(factory, channel="x") == {"planned": 200}
    assert states(factory, channel="bluesky") == {"held": 200}
    with transaction(factory) as s:
        events = s.execute(select(Event.delivery_id, Event.actor, Event.from_state, Event.to_state)
                           .where(Event.delivery_id.in_(result.changed))).all()
        assert len(events) == 200 and {e[1:] for e in events} == {("cli:ana", "held", "planned")}
        assert s.scalar(select(func.count()).where(Delivery.channel == "x", Delivery.hold_reason.is_not(None))) == 0


def test_bulk_skips_and_counts_rows_a_worker_claimed(settings):
    factory = ledger(settings)
    [post] = flood(factory, 1, state="planned")
    with transaction(factory) as s:
        x = s.scalar(select(Delivery.id).where(Delivery.post_id == post, Delivery.channel == "x"))
    claim = claim_one(factory, x, utcnow(), ttl=timedelta(minutes=5), actor="worker:test")
    result = bulk_act(factory, "cancel", Selection(post_id=post), "cli:ana")
    assert (len(result.changed), result.busy) == (2, 1)
    with transaction(factory) as s:
        row = s.get(Delivery, x)
        assert (row.state, row.claim_token) == ("claimed", claim.token)  # never raced
    assert states(factory, post_id=post) == {"cancelled": 2, "claimed": 1}


def test_bulk_reschedule_keeps_a_held_delivery_held(settings):
    factory = ledger(settings)
    flood(factory, 3)
    flood(factory, 2, state="planned", first=3)
    later = NOW + timedelta(days=3)
    result = bulk_act(factory, "reschedule", Selection(channel="bluesky"), "desk:ana", due=later)
    assert len(result.changed) == 5
    assert states(factory, channel="bluesky") == {"held": 3, "planned": 2}
    with transaction(factory) as s:
        assert set(s.scalars(select(Delivery.due_at).where(Delivery.channel == "bluesky"))) == {later}
        held = s.scalars(select(Delivery.hold_reason).where(Delivery.channel == "bluesky",
                                                             Delivery.state == "held")).all()
        assert all(reason for reason in held)


def test_a_bulk_action_with_no_filter_is_refused(settings):
    with pytest.raises(ValueError, match="name the deliveries"):
        bulk_act(ledger(settings), "cancel", Selection(), "cli:ana")


# ---------------------------------------------------------------- bulk actions: the CLI


@pytest.fixture
def config(tmp_path, make_settings):
    settings = make_settings(channels=CHANNELS)
    path = tmp_path / "settings.toml"
    path.write_text(f"""
[site]
name = "Flood"
url = "https://blog.example"
timezone = "America/New_York"
[store]
url = "{settings.store_url}"
[outbox]
dir = "{tmp_path / 'outbox'}"
[channels.newsletter]
kind = "email"
provider = "outbox"
to = ["reader@example.org"]
[channels.x]
kind = "x"
provider = "outbox"
[channels.bluesky]
kind = "bluesky"
provider = "outbox"
""")
    return path, ledger(settings)


def test_cli_bulk_approve_hold_reschedule_cancel_by_filter(config, capsys):
    path, factory = config
    posts = flood(factory, 50)
    c = ["--config", str(path)]
    assert main([*c, "approve", "--channel", "newsletter"]) == 0
    assert "50 approved" in capsys.readouterr().out
    assert main([*c, "approve", "--post", str(posts[0])]) == 0
    assert "2 approved, 1 skipped (not in a state that allows it)" in capsys.readouterr().out
    assert main([*c, "hold", "--channel", "newsletter", "--reason", "checking links"]) == 0
    assert "50 held" in capsys.readouterr().out
    assert main([*c, "reschedule", "--state", "held", "--channel", "x", "--to", "2026-12-01T09:00"]) == 0
    assert "49 rescheduled; due 2026-12-01 14:00 UTC" in capsys.readouterr().out  # 09:00 in New York
    assert states(factory, channel="x") == {"held": 49, "planned": 1}
    assert main([*c, "cancel", "--all-held"]) == 0
    assert "148 cancelled" in capsys.readouterr().out
    assert states(factory) == {"cancelled": 148, "planned": 2}
    ids = [str(i) for i in range(1, 4)]
    assert main([*c, "approve", *ids]) == 0  # several ids: one bulk action
    assert "0 approved, 3 skipped" in capsys.readouterr().out
    assert main([*c, "cancel"]) == 2  # no filter: refused, nothing changed
    assert main([*c, "approve", "--channel", "nosuch"]) == 2
    assert states(factory) == {"cancelled": 148, "planned": 2}


# ---------------------------------------------------------------- the embedded runner's tick


def test_embedded_runner_sends_an_approval_within_a_tick_and_beats(make_settings):
    settings = make_settings(channels=CHANNELS, run={"interval": "1h", "tick": "1s"})
    factory = ledger(settings)
    [post] = flood(factory, 1, channels=("x",))
    stop, summaries = threading.Event(), []
    loop = threading.Thread(target=run_forever, args=(settings, summaries.append), kwargs={"stop": stop})
    loop.start()
    try:
        _wait(lambda: summaries, "the first pass")
        assert states(factory) == {"held": 1}
        bulk_act(factory, "approve", Selection(post_id=post), "cli:ana")
        started = time.monotonic()
        _wait(lambda: states(factory) == {"sent": 1}, "the approved delivery to be sent")
        assert time.monotonic() - started < 5  # a tick, not the hour until the next poll
    finally:
        stop.set()
        loop.join(10)
    with transaction(factory) as s:
        pulse = heartbeat.latest(s)
    assert pulse.name == "runner" and pulse.next_at - pulse.at <= timedelta(seconds=1)
    assert timedelta(minutes=55) < pulse.next_poll_at - pulse.at <= timedelta(hours=1)


def _wait(condition, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)

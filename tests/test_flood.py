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
from syndicate.engine import heartbeat
from syndicate.engine.bulk import Selection, bulk_act
from syndicate.engine.dispatch import claim_one
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
                 "url": f"https://blog.example/{i}", "title": f"Flood post {i}", "plan": "hold",
                 "data": {"identity": f"flood-{i}", "fingerprint": f"fp-{i}", "url": f"https://blog.example/{i}",
                          "title": f"Flood post {i}"},
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


# ---------------------------------------------------------------- the desk at flood size


@pytest.fixture
def desk(make_settings, monkeypatch):
    from test_desk import PASSWORD, sign_in

    from syndicate.web import auth, create_app

    monkeypatch.setenv("SYNDICATE_SECRET", "flood-test-signing-key-0123456789-abcdefghij")
    settings = make_settings(channels=CHANNELS)
    factory = ledger(settings)
    auth.add_user(factory, "ana", PASSWORD)
    client = create_app(settings).test_client()
    sign_in(client)
    return settings, factory, client


def _page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.get_data(as_text=True)


def _ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'name="id" value="(\d+)"', page)]


def test_desk_held_tab_with_30000_rows_is_one_small_page_at_a_time(desk):
    _, factory, client = desk
    flood(factory, 10_000)
    page = _page(client, "/desk/?tab=held")
    first = _ids(page)
    assert len(first) == 100 and len(page) < 250_000  # was every row: 18 MB
    # Counted up to 10,000 (ledger/counts.py): past it "10,000+", read aloud as "more than 10,000".
    assert 'Showing 1–100 of <span aria-hidden="true">10,000+</span><span class="sr-only"> more than 10,000</span> ' \
        'deliveries' in page
    following = re.search(r'href="([^"]*after=[^"]*)">Next page', page).group(1).replace("&amp;", "&")
    second_page = _page(client, following)
    second = _ids(second_page)
    assert len(second) == 100 and not set(first) & set(second)
    assert 'Showing 101–200 of <span aria-hidden="true">10,000+</span>' in second_page
    with transaction(factory) as s:  # in due order, exactly the next hundred
        expected = s.scalars(select(Delivery.id).where(Delivery.state == "held")
                             .order_by(Delivery.due_at, Delivery.id).limit(200)).all()
    assert sorted(first + second) == sorted(expected)
    only_x = _page(client, "/desk/?tab=held&channel=x")
    assert "of 10,000 deliveries on x" in only_x and len(_ids(only_x)) == 100  # exactly the cap: exact


def test_desk_bulk_approve_ticked_and_cancel_all_on_a_channel(desk):
    from test_desk import token

    _, factory, client = desk
    flood(factory, 30)
    ids = _ids(_page(client, "/desk/?tab=held"))[:3]
    response = client.post("/desk/bulk", data={"csrf_token": token(client), "tab": "held", "action": "approve",
                                               "scope": "selected", "id": [str(i) for i in ids]},
                           follow_redirects=True)
    assert "3 approved." in response.get_data(as_text=True)
    with transaction(factory) as s:
        assert set(s.scalars(select(Delivery.state).where(Delivery.id.in_(ids)))) == {"planned"}
        assert s.scalar(select(func.count()).select_from(Event).where(Event.actor == "desk:ana",
                                                                      Event.delivery_id.is_not(None))) == 3
    response = client.post("/desk/bulk", data={"csrf_token": token(client), "tab": "held", "action": "cancel",
                                               "scope": "all", "channel": "bluesky"}, follow_redirects=True)
    assert "29 cancelled." in response.get_data(as_text=True)  # the held ones; the approved one stays
    assert states(factory, channel="bluesky") == {"cancelled": 29, "planned": 1}
    later = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    response = client.post("/desk/bulk", data={"csrf_token": token(client), "tab": "held", "action": "reschedule",
                                               "scope": "all", "channel": "x", "when": later}, follow_redirects=True)
    assert "29 rescheduled." in response.get_data(as_text=True) and "once approved" in response.get_data(as_text=True)
    assert states(factory, channel="x") == {"held": 29, "planned": 1}  # still held: only approve releases it
    before = states(factory)
    for data in ({"tab": "held", "action": "approve", "scope": "all"},  # no CSRF token
                 {"csrf_token": token(client), "tab": "held", "action": "approve", "scope": "selected"},
                 {"csrf_token": token(client), "tab": "sent", "action": "cancel", "scope": "all"}):
        client.post("/desk/bulk", data=data)
    assert states(factory) == before


def test_desk_bulk_skips_a_row_a_worker_claimed(desk):
    from test_desk import token

    _, factory, client = desk
    [post] = flood(factory, 1, state="planned")
    with transaction(factory) as s:
        x = s.scalar(select(Delivery.id).where(Delivery.post_id == post, Delivery.channel == "x"))
    claim_one(factory, x, utcnow(), ttl=timedelta(minutes=5), actor="worker:test")
    response = client.post("/desk/bulk", data={"csrf_token": token(client), "tab": "upcoming", "action": "hold",
                                               "scope": "all"}, follow_redirects=True)
    assert "2 held, 1 skipped (a worker is sending them)." in response.get_data(as_text=True)
    assert states(factory) == {"held": 2, "claimed": 1}


def test_desk_sent_tab_shows_one_day_in_the_site_time_zone(desk):
    _, factory, client = desk
    flood(factory, 2, channels=("x",), state="sent")
    evening, after_midnight = datetime(2026, 11, 24, 4, 30, tzinfo=UTC), datetime(2026, 11, 24, 5, 30, tzinfo=UTC)
    with transaction(factory) as s:  # 11:30 PM on the 23rd and 12:30 AM on the 24th in New York
        a, b = s.scalars(select(Delivery).order_by(Delivery.id)).all()
        a.sent_at, b.sent_at = evening, after_midnight
    day23 = _page(client, "/desk/?tab=sent&day=2026-11-23")
    assert "11:30 PM" in day23 and "12:30 AM" not in day23 and "1 delivery" in day23
    day24 = _page(client, "/desk/?tab=sent&day=2026-11-24")
    assert "12:30 AM" in day24 and "11:30 PM" not in day24
    assert "Nothing was sent that day" in _page(client, "/desk/?tab=sent&day=2026-11-25")
    assert "of 2 deliveries" in _page(client, "/desk/?tab=sent")
    assert "Yesterday" in day23


def test_desk_says_whether_a_runner_is_sending_and_when_next(desk):
    _, factory, client = desk
    flood(factory, 1)
    assert "Nothing is sending: no runner has run yet" in _page(client, "/desk/")
    now = utcnow()
    heartbeat.beat(factory, "runner", now, now + timedelta(seconds=5), now + timedelta(minutes=14))
    page = _page(client, "/desk/")
    assert "The embedded runner (syndicate run) last ran just now; it sends what is due next in 4 s" in page \
        or "next in 5 s" in page
    heartbeat.beat(factory, "runner", now - timedelta(hours=1), now - timedelta(hours=1) + timedelta(seconds=5))
    post_id = flood(factory, 1, first=5)[0]
    assert "Nothing is sending: the embedded runner (syndicate run) last ran 60 min ago" in _page(
        client, f"/desk/post/{post_id}")


# ---------------------------------------------------------------- long lists on the command line


def test_lists_leave_the_payloads_unread(settings):
    """`status` and the desk's queue pages show no payload, and an email's is its whole HTML (up
    to 100 KB): 200 rows of newsletters were 12 MB read and decoded for a table of one-liners."""
    from sqlalchemy import event

    from syndicate.cli.report import status_rows
    from syndicate.web.desk.previews import queue_page

    factory = ledger(settings)
    flood(factory, 3)
    engine = factory.kw["bind"]
    seen: list[str] = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        rows = status_rows(settings, 50)
        with transaction(factory) as s:
            page = queue_page(s, settings, "held")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(rows) == 9 and len([r for r in page.rows if r.delivery_id]) == 9
    listed = [st for st in seen if "FROM deliveries" in st and "ORDER BY" in st]
    assert len(listed) == 2 and not [st for st in listed if "payload" in st], listed


def test_status_prints_a_page_with_a_more_line_and_filters(config, capsys):
    path, factory = config
    flood(factory, 100)  # 300 held
    flood(factory, 5, channels=("x",), state="sent", first=100)
    c = ["--config", str(path)]
    assert main([*c, "status"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^│\s+\d+ │", out, re.M)) == 200
    assert "105 more not shown" in out and "300 held, 5 sent" in out
    assert main([*c, "status", "--state", "sent", "--channel", "x"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^│\s+\d+ │", out, re.M)) == 5 and "more not shown" not in out and "5 sent" in out
    assert main([*c, "status", "--channel", "bluesky", "--limit", "10", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 10 and {r["channel"] for r in rows} == {"bluesky"}
    assert main([*c, "status", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 305  # JSON: every row unless --limit
    with transaction(factory) as s:
        s.execute(Delivery.__table__.update().where(Delivery.state == "sent")
                  .values(updated_at=datetime(2026, 12, 1, 12, tzinfo=UTC)))
    assert main([*c, "status", "--since", "2026-12-01T06:00", "--json"]) == 0  # 06:00 in New York
    assert {r["state"] for r in json.loads(capsys.readouterr().out)} == {"sent"}
    assert main([*c, "status", "--since", "yesterday"]) == 2
    assert main([*c, "status", "--state", "failed"]) == 0
    assert "no delivery matches" in capsys.readouterr().out


def test_subscribers_list_says_the_total_first_and_shows_a_page(config, capsys):
    from syndicate.audience import subscribers

    path, factory = config
    csv = path.parent / "list.csv"
    csv.write_text("email\n" + "".join(f"reader{i:04d}@example.org\n" for i in range(450)))
    assert main(["--config", str(path), "subscribers", "import", str(csv)]) == 0
    capsys.readouterr()
    assert main(["--config", str(path), "subscribers", "list"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("450 subscribers: 450 active") and "showing the first 200" in first
    assert out.count("@example.org") == 200
    assert main(["--config", str(path), "subscribers", "list", "--limit", "0"]) == 0
    assert capsys.readouterr().out.count("@example.org") == 450
    assert len(subscribers.list_subscribers(factory, limit=7)) == 7


def test_cli_schedule_of_a_flood_shows_the_first_rows_and_says_how_many_more(config, capsys):
    """`schedule` on 300 held deliveries prints the first --limit by due time and a line saying
    how many more, instead of loading (and printing) every one; --json --limit pages the same way."""
    path, factory = config
    flood(factory, 100)
    c = ["--config", str(path)]
    assert main([*c, "schedule", "--limit", "20"]) == 0
    assert "280 more not shown" in capsys.readouterr().out
    assert main([*c, "schedule", "--json", "--limit", "5"]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out) if r["delivery_id"] is not None]
    assert [r["what"] for r in rows] == ["Flood post 0"] * 3 + ["Flood post 1"] * 2  # by due time
    assert main([*c, "schedule", "--json"]) == 0
    assert sum(r["delivery_id"] is not None for r in json.loads(capsys.readouterr().out)) == 300

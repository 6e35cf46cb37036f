"""The pause button: no claim commits after the pause has committed, sends in flight finish,
polls and planning go on, and resume holds for a person what went stale while paused."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

from sqlalchemy import func, insert, select

from syndicate.cli import main
from syndicate.engine.deliver import deliver
from syndicate.engine.dispatch import claim_due, claim_one
from syndicate.engine.pause import pause, paused, resume
from syndicate.engine.runner import run_once
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Event, utcnow

TTL = timedelta(minutes=5)


def _seed(factory, count: int, due, state: str = "planned") -> list[int]:
    rows = [{"key": uuid.uuid4().hex, "subject": f"t:{uuid.uuid4().hex}", "channel": "x", "kind": "x",
             "provider": "outbox", "state": state, "due_at": due, "payload": {"text": f"post {n}"},
             "attempts": 0, "created_at": utcnow(), "updated_at": utcnow()} for n in range(count)]
    with transaction(factory) as s:
        s.execute(insert(Delivery), rows)
        return list(s.scalars(select(Delivery.id).order_by(Delivery.id.desc()).limit(count)))


def _states(factory) -> dict[str, int]:
    with transaction(factory) as s:
        return dict(s.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())


def _count(factory, to_state: str) -> int:
    with transaction(factory) as s:
        return s.scalar(select(func.count()).select_from(Event).where(Event.to_state == to_state))


def test_pause_stops_claims_and_starts_and_resume_holds_stale_ones(store_url, make_settings):
    settings = make_settings(store_url=store_url, run={"stale_after": "1h"})
    factory = open_ledger(store_url)
    now = utcnow()
    [before] = _seed(factory, 1, now - timedelta(minutes=1))
    [claim] = claim_due(factory, now, limit=1, ttl=TTL)  # claimed before the pause, not started yet

    state, changed = pause(factory, "cli:alex", "bad news day")
    assert changed and state.reason == "bad news day" and state.actor == "cli:alex"
    assert pause(factory, "cli:sam")[1] is False  # pressing it twice changes nothing
    recent = _seed(factory, 3, now - timedelta(minutes=5))
    assert claim_due(factory, utcnow(), limit=10, ttl=TTL) == []
    assert claim_one(factory, recent[0], utcnow(), ttl=TTL, actor="desk:alex") is None
    # The claim taken before the pause is handed back when its worker tries to start it.
    assert deliver(factory, settings, claim.delivery_id, claim.token).state == "paused"
    with transaction(factory) as s:
        assert s.get(Delivery, before).state == "planned"

    # While paused, time passes: these went due 3 hours ago (after the pause began) and go stale.
    later = utcnow() + timedelta(hours=3)
    stale = _seed(factory, 2, utcnow() + timedelta(seconds=1))
    fresh = _seed(factory, 1, later - timedelta(minutes=30))
    [sensitive] = _seed(factory, 1, utcnow() + timedelta(seconds=1), state="held")
    done = resume(factory, settings, "cli:alex", now=later)
    assert done.was_paused and sorted(done.held) == sorted(stale)
    with transaction(factory) as s:
        assert paused(s) is None
        rows = {d.id: d for d in s.scalars(select(Delivery))}
    assert all(rows[i].state == "held" and "while paused" in rows[i].hold_reason for i in stale)
    assert rows[fresh[0]].state == "planned"  # due 30 min before resume: within stale_after, it goes
    assert rows[sensitive].state == "held" and rows[sensitive].hold_reason is None  # untouched
    assert rows[before].state == "planned"  # due before the pause: the pause did not make it late
    assert {c.delivery_id for c in claim_due(factory, later, limit=10, ttl=TTL)} == {before, *recent, *fresh}


def test_runs_poll_and_plan_while_paused_and_say_so(make_settings, demo_feed_path, capsys, tmp_path):
    settings = make_settings(feeds=[{"name": "wellness", "url": str(demo_feed_path), "backfill": 5}])
    factory = open_ledger(settings.store_url)
    pause(factory, "cli:alex", "checking the news")
    summary = run_once(settings)
    assert summary.polls and summary.plan.planned and not summary.outcomes
    assert summary.paused and summary.paused.reason == "checking the news"
    assert _states(factory).get("sent") is None

    config = tmp_path / "settings.toml"
    config.write_text(f'[site]\nname = "H"\nurl = "https://h.example"\n[store]\nurl = "{settings.store_url}"\n'
                      f'[outbox]\ndir = "{tmp_path / "outbox"}"\n')
    assert main(["--config", str(config), "status"]) == 0
    assert "PAUSED since" in capsys.readouterr().out
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert "checking the news" in capsys.readouterr().out
    assert main(["--config", str(config), "resume"]) == 0
    assert "resumed" in capsys.readouterr().out
    assert main(["--config", str(config), "status"]) == 0
    assert "PAUSED" not in capsys.readouterr().out


def test_no_claim_commits_after_the_pause_commits_during_a_1000_delivery_dispatch(pg_database, make_settings):
    """Four concurrent claimers (threads, each its own connection) dispatch 1,000 deliveries on
    PostgreSQL; the pause commits mid-way. Once ``pause`` has returned, the count of claims and
    starts must never move again: a claim in flight committed before it (the pause waited for
    its share lock), and every later one saw the switch."""
    from sqlalchemy import text

    with open_ledger(pg_database)() as s, s.begin():
        s.execute(text("TRUNCATE events, deliveries RESTART IDENTITY CASCADE"))
        s.execute(text("UPDATE pause_switch SET paused = false"))
    settings = make_settings(store_url=pg_database)
    factory = open_ledger(pg_database)
    _seed(factory, 1000, utcnow() - timedelta(minutes=1))
    stop = threading.Event()
    errors: list[BaseException] = []
    outcomes: list[str] = []

    def claimer():
        try:
            while not stop.is_set():
                claims = claim_due(factory, utcnow(), limit=25, ttl=TTL)
                for c in claims:
                    outcomes.append(deliver(factory, settings, c.delivery_id, c.token).state)
                if not claims:
                    time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while _count(factory, "claimed") < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    pause(factory, "cli:test", "stop the presses")
    claimed, started = _count(factory, "claimed"), _count(factory, "sending")
    time.sleep(2)  # the claimers keep trying
    assert (_count(factory, "claimed"), _count(factory, "sending")) == (claimed, started)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert 200 <= claimed < 1000
    states = _states(factory)
    # Every send that started finished; what was claimed but not started went back to planned.
    assert states.get("sent") == started and not states.get("claimed") and not states.get("sending")
    assert states.get("planned") == 1000 - started
    assert outcomes.count("sent") == started

    resume(factory, settings, "cli:test")
    assert len(claim_due(factory, utcnow(), limit=2000, ttl=TTL)) == 1000 - started


def test_a_pause_waits_for_a_claim_in_flight_on_postgresql(pg_database):
    """The ordering the 1,000-delivery test relies on, made deterministic: a claim transaction
    that has passed the switch holds its share lock, so the pause commits only after it."""
    factory = open_ledger(pg_database)
    resume_plain(factory)
    paused_at: list[float] = []
    with factory() as s, s.begin():
        from syndicate.engine.pause import gate

        assert gate(s)
        t = threading.Thread(target=lambda: (pause(factory, "cli:test"), paused_at.append(time.monotonic())))
        t.start()
        time.sleep(1)
        assert not paused_at  # the pause is waiting for this claim
        committed = time.monotonic()
    t.join(10)
    assert paused_at and paused_at[0] >= committed
    with factory() as s, s.begin():
        assert not gate(s)
    resume_plain(factory)


def resume_plain(factory) -> None:
    from sqlalchemy import text

    with factory() as s, s.begin():
        s.execute(text("UPDATE pause_switch SET paused = false"))


def test_the_desk_pause_button_needs_csrf_and_shows_on_every_page(make_settings, demo_feed_path, monkeypatch):
    from test_desk import GROUNDING, make_desk, text_of, token

    monkeypatch.setenv("SYNDICATE_SECRET", "desk-test-signing-key-7Hq2Wm9Zx4Rb-pause")
    desk = make_desk(make_settings, demo_feed_path)
    client = desk.client()
    assert "Pause all sending" in text_of(client.get("/desk/"))
    assert client.post("/desk/pause", data={"reason": "no token"}).status_code == 400  # CSRF
    with transaction(desk.factory) as s:
        assert paused(s) is None
    page = text_of(client.post("/desk/pause", data={"csrf_token": token(client), "reason": "storm news"},
                               follow_redirects=True))
    assert "Sending is paused" in page and "storm news" in page and "by ana" in page
    with transaction(desk.factory) as s:
        assert paused(s).actor == "desk:ana"
    post_id = desk.delivery(GROUNDING, "x").post_id
    for url in ("/desk/?tab=held", f"/desk/post/{post_id}", "/desk/digest"):
        assert "Sending is paused" in text_of(client.get(url)), url
    page = text_of(client.post("/desk/resume", data={"csrf_token": token(client)}, follow_redirects=True))
    assert "Sending resumed" in page and "Sending is paused" not in page
    with transaction(desk.factory) as s:
        assert paused(s) is None
